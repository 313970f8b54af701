//! Appendix E has no exercises; `list` says so.

use shared::exercise::Exercise;

pub const ALL: &[Exercise] = &[];
