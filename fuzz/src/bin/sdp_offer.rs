//! Fuzz target `sdp_offer`: AFL++ in persistent mode, feeding each input to
//! [`hearken::fuzzing::sdp_offer`].

fn main() {
    afl::fuzz!(|data: &[u8]| hearken::fuzzing::sdp_offer(data));
}
