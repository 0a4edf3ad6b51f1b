//! The PF evaluator lives in the library (`warden::ops::pfeval`); the tests that judge
//! rendered rules include this file with `#[path = "support/pfeval.rs"]`.
#![allow(unused_imports)]
pub use warden::ops::pfeval::*;
