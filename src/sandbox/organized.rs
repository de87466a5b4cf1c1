//! `organizeOutputBy=Patient` (Bulk Data v3): output files of resource blocks, each a `Parameters`
//! header naming a patient, then the patient and the resources that reference it. With several files
//! (`files_per_type`), the last block of each file but the last is split: its second half continues in
//! the next file, which starts with the block's header again (`continuesInFile` in the manifest).
//! Organizations and practitioners reference no patient and are left out, as the IG allows.

use bytes::Bytes;

use super::data::{DataSpec, ResourceType, Selection};

/// One organized file: its lines (headers included) and the file its last block continues in.
pub struct OrganizedFile {
    pub name: String,
    /// Its lines, the headers included (the sandbox lists them all in the entry's `count`).
    pub bytes: Bytes,
    pub continues_in: Option<String>,
}

/// The block of patient `i`: header, Patient, then the rest of the patient's resources, one per line.
fn block(spec: &DataSpec, sel: &Selection, i: u32) -> Vec<Vec<u8>> {
    let id = format!("pt-{i}");
    let header = format!(
        r#"{{"resourceType":"Parameters","parameter":[{{"name":"header","valueReference":{{"reference":"Patient/{id}"}}}}]}}"#
    );
    let mut lines = vec![header.into_bytes()];
    let types: Vec<ResourceType> = sel
        .types
        .iter()
        .copied()
        .filter(|t| !matches!(t, ResourceType::Organization | ResourceType::Practitioner))
        .collect();
    let one = Selection { types, patients: Some(vec![i]), ..sel.clone() };
    // `generate` returns types in `sel.types` order, Patient first.
    for td in spec.generate(&one) {
        lines.extend(td.bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec));
    }
    lines
}

/// Every selected patient's block, in `files` files (at least one when there is any block).
pub fn build(spec: &DataSpec, sel: &Selection, files: u32) -> Vec<OrganizedFile> {
    let patients: Vec<u32> = match &sel.patients {
        Some(p) => p.clone(),
        None => (0..spec.patient_count()).collect(),
    };
    let blocks: Vec<Vec<Vec<u8>>> = patients.iter().map(|&i| block(spec, sel, i)).filter(|b| b.len() > 1).collect();
    if blocks.is_empty() {
        return Vec::new();
    }
    let n = (files.max(1) as usize).min(blocks.len());
    let mut contents: Vec<Vec<Vec<u8>>> = (0..n)
        .map(|k| blocks[k * blocks.len() / n..(k + 1) * blocks.len() / n].iter().flatten().cloned().collect())
        .collect();
    let mut continues = vec![false; n];
    for k in 0..n.saturating_sub(1) {
        // The file's last block: from its last header to the end.
        let start = contents[k].iter().rposition(|l| l.starts_with(br#"{"resourceType":"Parameters""#));
        let Some(start) = start.filter(|s| contents[k].len() - s >= 3) else { continue };
        let cut = start + 1 + (contents[k].len() - start - 1) / 2;
        let rest: Vec<Vec<u8>> = contents[k].split_off(cut);
        let header = contents[k][start].clone();
        let next = std::mem::take(&mut contents[k + 1]);
        contents[k + 1] = std::iter::once(header).chain(rest).chain(next).collect();
        continues[k] = true;
    }
    let name = |k: usize| format!("organized.{}.ndjson", k + 1);
    contents
        .into_iter()
        .enumerate()
        .map(|(k, lines)| {
            let mut bytes = lines.join(&b'\n');
            bytes.push(b'\n');
            OrganizedFile { name: name(k), bytes: Bytes::from(bytes), continues_in: continues[k].then(|| name(k + 1)) }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(types: &[ResourceType]) -> Selection {
        Selection { types: types.to_vec(), since: None, until: None, patients: Some(vec![0, 1, 2, 3]) }
    }

    #[test]
    fn blocks_open_with_a_header_and_split_blocks_repeat_it() {
        let spec = DataSpec { scale: 1, anchor: 1_700_000_000 };
        let files = build(&spec, &sel(&[ResourceType::Patient, ResourceType::Condition]), 2);
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].continues_in.as_deref(), Some("organized.2.ndjson"));
        assert_eq!(files[1].continues_in, None);
        for f in &files {
            let lines: Vec<&[u8]> = f.bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
            assert!(lines.len() > 2, "{}", f.name);
            assert!(lines[0].starts_with(br#"{"resourceType":"Parameters""#), "{}", f.name);
        }
        // The second file starts with the header of the block the first one ends in.
        let first = String::from_utf8(files[0].bytes.to_vec()).unwrap();
        let second = String::from_utf8(files[1].bytes.to_vec()).unwrap();
        let last_header = first.lines().rfind(|l| l.contains("\"Parameters\"")).unwrap();
        assert_eq!(second.lines().next(), Some(last_header));
    }
}
