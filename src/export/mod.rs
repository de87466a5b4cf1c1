//! The export itself: [`kickoff`] builds and sends the request, [`inflight`] keeps the export's state
//! from kick-off to manifest, [`poll`] waits for the server (the FHIR
//! asynchronous request pattern), [`manifest`] parses and checks what it returns and names the files,
//! [`pages`] follows paged manifests, [`member_match`] runs Payer-to-Payer matching first (PDex
//! `$bulk-member-match`, read by [`match_result`], or HRex `$member-match` per member, [`hrex_match`]),
//! [`group`] reads a Group's size (1up's 10,000-member limit), and [`delete`] asks the server to forget a
//! finished export. [`advice`] words what to type next, for every message that says it.

pub mod advice;
pub mod delete;
pub mod group;
pub mod hrex_match;
pub mod inflight;
pub mod kickoff;
pub mod manifest;
pub mod match_result;
pub mod member_match;
pub mod pages;
pub mod poll;
