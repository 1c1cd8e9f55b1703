//! Fuzz target `datagram`: AFL++ in persistent mode, feeding each input to
//! [`hearken::fuzzing::datagram`].

fn main() {
    afl::fuzz!(|data: &[u8]| hearken::fuzzing::datagram(data));
}
