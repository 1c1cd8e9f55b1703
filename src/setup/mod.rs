//! What the server loads at start besides its config: consent rules and
//! prompts.

pub mod consent;
