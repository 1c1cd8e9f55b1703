//! Fuzz target `consent_rules`: AFL++ in persistent mode, feeding each input to
//! [`hearken::fuzzing::consent_rules`].

fn main() {
    afl::fuzz!(|data: &[u8]| hearken::fuzzing::consent_rules(data));
}
