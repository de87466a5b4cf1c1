//! Job-file enumerations written once: `choices!` declares an enum together with the name each
//! variant has in a job file, and from that one table come parsing ([`Choice::from_name`]), the
//! variant's name ([`as_str`](crate::job::Access::as_str)) and the "allowed:" and "did you mean" hints
//! ([`Choice::NAMES`]). A new variant is one line.

/// An enumeration a job file names by text.
pub trait Choice: Copy + Sized + 'static {
    /// The names as written in a job file, in the order of [`Choice::ALL`].
    const NAMES: &'static [&'static str];
    const ALL: &'static [Self];

    /// The variant named `name`, ignoring ASCII case.
    fn from_name(name: &str) -> Option<Self> {
        Self::NAMES.iter().position(|n| n.eq_ignore_ascii_case(name)).map(|i| Self::ALL[i])
    }
}

/// `choices! { /// doc  pub enum Level { System = "system", … } }`: the enum, its [`Choice`] table and
/// `as_str`, from one list.
macro_rules! choices {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $crate::job::choice::Choice for $name {
            const NAMES: &'static [&'static str] = &[$($text),+];
            const ALL: &'static [Self] = &[$($name::$variant),+];
        }

        impl $name {
            /// The name as written in a job file.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }
    };
}

pub(crate) use choices;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{Access, JwtAlgorithm, Level};

    #[test]
    fn names_parse_back_to_their_variant() {
        for v in Level::ALL {
            assert_eq!(Level::from_name(v.as_str()), Some(*v));
        }
        assert_eq!(Access::NAMES, ["provider-access", "payer-to-payer", "bulk-data", "patient-access"]);
        assert_eq!(JwtAlgorithm::from_name("es384"), Some(JwtAlgorithm::Es384));
        assert_eq!(Level::from_name("sytem"), None);
    }
}
