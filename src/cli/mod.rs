//! What only the command line needs: confirmation, the man pages and their pager.

pub mod manpage;
pub mod support;
