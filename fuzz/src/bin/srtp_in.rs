//! Fuzz target `srtp_in`: AFL++ in persistent mode, feeding each input to
//! [`hearken::fuzzing::srtp_in`].

fn main() {
    afl::fuzz!(|data: &[u8]| hearken::fuzzing::srtp_in(data));
}
