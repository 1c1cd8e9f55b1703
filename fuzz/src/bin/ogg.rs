//! Fuzz target `ogg`: AFL++ in persistent mode, feeding each input to
//! [`hearken::fuzzing::ogg`].

fn main() {
    afl::fuzz!(|data: &[u8]| hearken::fuzzing::ogg(data));
}
