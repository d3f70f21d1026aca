//! `vocabulary!`: a fieldless enum declared together with its `ALL` list
//! and its wire strings, so a new variant cannot be left out of either.
//! [`crate::http::error_kind::ErrorKind`] and [`crate::protocol::Outcome`]
//! are declared with it.

/// Declares `enum $name { $variant, ... }` plus `$name::ALL` (every
/// variant, in declaration order) and `$name::as_str` (the string given
/// after each variant's `=`).
macro_rules! vocabulary {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $($(#[$variant_meta:meta])* $variant:ident = $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        $vis enum $name {
            $($(#[$variant_meta])* $variant,)+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The variant's wire string.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use vocabulary;
