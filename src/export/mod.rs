//! The export itself: [`kickoff`] builds and sends the request, [`poll`] waits for the server, and
//! [`manifest`] parses and checks what it returns and names the files.

pub mod kickoff;
pub mod manifest;
pub mod member_match;
pub mod poll;
