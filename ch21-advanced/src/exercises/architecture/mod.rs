//! Architecture studies (21.25, 21.26, 21.28-21.30, 21.33), each run by `compare`: positions, sliding windows, grouped-query attention, attention sinks, prefix LMs, multi-token prediction.

pub mod ex21_25;
pub mod ex21_26;
pub mod ex21_28;
pub mod ex21_29;
pub mod ex21_30;
pub mod ex21_33;
