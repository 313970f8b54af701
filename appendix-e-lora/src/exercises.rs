//! Appendix E has no exercises; `list` says so.

use shared::app::exercise::Exercise;

pub const ALL: &[Exercise] = &[];
