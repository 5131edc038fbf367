//! Enums with stable wire strings: the one place a typed value becomes the
//! string that JSON output, database columns and metric labels carry, and
//! back. [`wire_enum!`] declares the enum and its strings together, so the
//! mapping is exhaustive by construction (adding a variant without its
//! string does not compile) and parsing accepts exactly those strings.

/// A string that names no variant of a wire enum (from a database row, a
/// config file or a command-line argument).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?} (expected one of: {expected})")]
pub struct UnknownWire {
    pub what: &'static str,
    pub value: String,
    pub expected: String,
}

impl UnknownWire {
    pub fn new(what: &'static str, value: &str, all: &[&'static str]) -> Self {
        UnknownWire {
            what,
            value: value.chars().take(64).collect(),
            expected: all.join(", "),
        }
    }
}

/// Declares a fieldless enum with one stable string per variant:
/// `as_str` (exhaustive match), `ALL`, `FromStr`, `Display`, and serde as
/// that string.
#[macro_export]
macro_rules! wire_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident as $what:literal {
            $( $(#[$vmeta:meta])* $variant:ident => $wire:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The stable wire string.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $wire, )+
                }
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::wire::UnknownWire;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $wire => Ok($name::$variant), )+
                    other => Err($crate::wire::UnknownWire::new(
                        $what,
                        other,
                        &[$($wire,)+],
                    )),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }
    };
}

#[cfg(test)]
mod tests {
    crate::wire_enum! {
        /// A test enum.
        enum Colour as "colour" {
            Red => "red",
            DarkBlue => "dark_blue",
        }
    }

    #[test]
    fn every_variant_round_trips_through_its_string() {
        for c in Colour::ALL {
            assert_eq!(c.as_str().parse::<Colour>().unwrap(), *c);
            assert_eq!(c.to_string(), c.as_str());
            let json = serde_json::to_string(c).unwrap();
            assert_eq!(serde_json::from_str::<Colour>(&json).unwrap(), *c);
        }
        assert_eq!(Colour::DarkBlue.as_str(), "dark_blue");
    }

    #[test]
    fn unknown_strings_are_refused_with_the_expected_ones() {
        let e = "Red".parse::<Colour>().unwrap_err();
        assert_eq!(e.what, "colour");
        assert!(e.to_string().contains("red, dark_blue"), "{e}");
        assert!(serde_json::from_str::<Colour>("\"green\"").is_err());
    }
}
