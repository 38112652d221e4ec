//! Closed sets of named values (methods, rules, policies) that front ends list and parse.
//!
//! A type implements [`Choice`] next to its definition; the CLI builds its option parsers and
//! help from it, so the names and their meanings exist once, here in the library.
//!
//! ```
//! use stagewise_core::choice::Choice;
//! use stagewise_core::theory::AsgdUpdate;
//!
//! assert_eq!(AsgdUpdate::parse_choice("averaged"), Ok(AsgdUpdate::Averaged));
//! assert!(AsgdUpdate::parse_choice("sync").unwrap_err().contains("allowed: per-push, averaged"));
//! ```

/// A value from a closed set, each with a name and a one-line help.
pub trait Choice: Copy + Sized + 'static {
    /// What the set is called in messages ("method", "update rule").
    const WHAT: &'static str;
    /// Every value, in the order help lists them.
    const ALL: &'static [Self];

    /// The value's name (kebab-case), as [`Choice::parse_choice`] reads it.
    fn name(self) -> &'static str;

    /// One line on what the value means.
    fn help(self) -> &'static str;

    /// The value named `s`.
    ///
    /// # Errors
    /// When no value has that name: the message lists the allowed ones.
    fn parse_choice(s: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .copied()
            .find(|v| v.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|v| v.name()).collect();
                format!(
                    "unknown {} '{s}'; allowed: {}",
                    Self::WHAT,
                    names.join(", ")
                )
            })
    }
}

/// Implements [`std::fmt::Display`] and [`std::str::FromStr`] through [`Choice`].
#[macro_export]
macro_rules! display_and_parse_by_choice {
    ($t:ty) => {
        impl ::std::fmt::Display for $t {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str($crate::choice::Choice::name(*self))
            }
        }
        impl ::std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> ::std::result::Result<Self, String> {
                <$t as $crate::choice::Choice>::parse_choice(s)
            }
        }
    };
}
