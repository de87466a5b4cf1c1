//! Fixed vocabularies for the synthetic data: names, codes, plans. Plain ASCII with no characters that
//! JSON would need to escape, because `data.rs` writes them into lines verbatim.

pub const GIVEN_F: &[&str] = &[
    "Ana", "Beatriz", "Chloe", "Dana", "Elena", "Fatima", "Grace", "Hana", "Irene", "Julia", "Keiko", "Lena", "Maria",
    "Nora", "Olivia", "Priya",
];
pub const GIVEN_M: &[&str] = &[
    "Aaron", "Bruno", "Carlos", "David", "Emil", "Farid", "George", "Hiro", "Ivan", "James", "Kofi", "Luis", "Marco",
    "Noah", "Omar", "Pavel",
];
pub const FAMILY: &[&str] = &[
    "Smith", "Johnson", "Garcia", "Nguyen", "Okafor", "Kowalski", "Silva", "Haddad", "Kim", "Patel", "Rossi",
    "Schmidt", "Tanaka", "Williams", "Brown", "Lopez", "Martin", "Ivanova", "Cohen", "Mensah",
];
pub const CITIES: &[&str] = &["Boston", "Springfield", "Worcester", "Lowell", "Cambridge", "Quincy"];

/// (class value, class name)
pub const PLANS: &[(&str, &str)] = &[
    ("PLAN-GOLD", "Gold PPO"),
    ("PLAN-SILVER", "Silver HMO"),
    ("PLAN-BRONZE", "Bronze EPO"),
    ("PLAN-MA", "Medicare Advantage"),
];

pub const ORG_NAMES: &[&str] = &[
    "Sandbox Health Plan",
    "Example Mutual Insurance",
    "Demo Care Payer",
    "Riverside Medical Group",
    "Hillcrest Community Clinic",
    "Northgate Hospital",
];

/// (CPT code, display)
pub const CPT: &[(&str, &str)] = &[
    ("99213", "Office visit, established patient, low complexity"),
    ("99214", "Office visit, established patient, moderate complexity"),
    ("99203", "Office visit, new patient, low complexity"),
    ("80053", "Comprehensive metabolic panel"),
    ("85025", "Complete blood count with differential"),
    ("93000", "Electrocardiogram, routine, with interpretation"),
    ("71046", "Radiologic examination, chest, 2 views"),
    ("90471", "Immunization administration"),
];

/// (SNOMED code, display) for encounter types.
pub const ENCOUNTER_TYPES: &[(&str, &str)] = &[
    ("185349003", "Encounter for check up"),
    ("390906007", "Follow-up encounter"),
    ("50849002", "Emergency room admission"),
    ("185345009", "Encounter for symptom"),
];

/// (LOINC code, display, UCUM unit, low, high)
pub const LOINC: &[(&str, &str, &str, u64, u64)] = &[
    ("8867-4", "Heart rate", "/min", 50, 110),
    ("8480-6", "Systolic blood pressure", "mm[Hg]", 95, 165),
    ("8462-4", "Diastolic blood pressure", "mm[Hg]", 55, 100),
    ("29463-7", "Body weight", "kg", 45, 130),
    ("8302-2", "Body height", "cm", 150, 200),
    ("8310-5", "Body temperature", "Cel", 36, 39),
    ("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", 70, 200),
    ("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 4, 11),
];

/// (SNOMED code, display) for conditions.
pub const SNOMED: &[(&str, &str)] = &[
    ("44054006", "Diabetes mellitus type 2"),
    ("38341003", "Hypertensive disorder"),
    ("195967001", "Asthma"),
    ("55822004", "Hyperlipidemia"),
    ("40055000", "Chronic sinusitis"),
    ("35489007", "Depressive disorder"),
    ("233604007", "Pneumonia"),
    ("271737000", "Anemia"),
];
