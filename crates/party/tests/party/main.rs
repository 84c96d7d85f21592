//! Parties across the protocol boundary: split training equals unsplit training, sessions are
//! isolated, bad peers get clear errors, parties run on different backends.

mod common;
mod cross_backend;
mod defenses;
mod equivalence;
mod generation;
mod lora;
mod observer;
mod sessions;
mod state;
