use super::*;
use crate::test_support::*;

fn cut_of(start: f64, end: f64) -> Result<((f64, f64), Vec<u8>), MixError> {
    let mut out = Vec::new();
    let span = cut(&mix_ab().0, start, end, &mut out)?;
    Ok((span, out))
}

#[test]
fn a_cut_holds_only_its_span() {
    let ((start, end), bytes) = cut_of(4.0, 5.0).unwrap();
    assert_eq!((start, end), (4.0, 5.0));
    let pcm = decode(&bytes);
    // 1 s exactly: 50 packets of 20 ms.
    assert_eq!(pcm.len(), 48_000);
    assert!((duration_seconds(&bytes).unwrap() - 1.0).abs() < 1e-9);
    let (p440, p1000) = (tone_power(&pcm, A_FREQ), tone_power(&pcm, B_FREQ));
    println!(
        "cut 4-5 s: {:.1} dBFS, 1000/440 Hz power ratio {:.0}",
        rms_dbfs(&pcm),
        p1000 / p440
    );
    assert!(p1000 > 1000.0 * p440);
    assert!(rms_dbfs(&pcm) > -20.0);

    let (packets, clean) = read_packets(&bytes);
    assert!(clean);
    assert_eq!(
        u16::from_le_bytes([packets[0].data[10], packets[0].data[11]]),
        0
    );
    assert_eq!(packets.len(), 2 + 50);
    assert_eq!(packets.last().unwrap().absgp_page(), 48_000);
}

#[test]
fn a_cut_plays_from_its_own_start() {
    // 3.5-4.5 s of the mix: half a second of silence, then B's tone.
    let ((start, end), bytes) = cut_of(3.5, 4.5).unwrap();
    assert_eq!((start, end), (3.5, 4.5));
    let pcm = decode(&bytes);
    let quiet = rms_dbfs(window(&pcm, 0.0, 0.45));
    println!("cut 3.5-4.5 s: first 0.45 s at {quiet:.1} dBFS");
    assert!(quiet < -50.0);
    // The tone starts at 4.0 s of call time: 0.5 s into the cut, give or
    // take the encoders' delay.
    let mix_onset = onset(&decode(&mix_ab().0), 3.8) as i64;
    let cut_onset = onset(&pcm, 0.0) as i64;
    assert!((cut_onset - (mix_onset - at(3.5) as i64)).abs() <= 120);
}

#[test]
fn cut_snaps_inward_to_the_packet_grid() {
    let (span, _) = cut_of(4.01, 4.99).unwrap();
    assert_eq!(span, (4.02, 4.98));
    let (span, bytes) = cut_of(4.0, 4.03).unwrap();
    assert_eq!(span, (4.0, 4.02));
    assert_eq!(decode(&bytes).len(), 960);
}

#[test]
fn a_cut_past_the_end_keeps_the_tail() {
    let (span, bytes) = cut_of(6.0, 100.0).unwrap();
    assert_eq!(span, (6.0, 6.8));
    assert_eq!(decode(&bytes).len(), 40 * 960);
}

#[test]
fn bad_spans_are_typed_errors() {
    assert!(matches!(
        cut_of(5.0, 4.0),
        Err(MixError::InvalidSpan { .. })
    ));
    assert!(matches!(
        cut_of(4.0, 4.0),
        Err(MixError::InvalidSpan { .. })
    ));
    assert!(matches!(
        cut_of(f64::NAN, 4.0),
        Err(MixError::InvalidSpan { .. })
    ));
    assert!(matches!(
        cut_of(6.8, 9.0),
        Err(MixError::SpanOutsideRecording { duration, .. }) if (duration - 6.8).abs() < 1e-9
    ));
    // Inside one packet: nothing whole to keep.
    assert!(matches!(
        cut_of(4.005, 4.015),
        Err(MixError::EmptySpan { .. })
    ));
    let mut out = Vec::new();
    assert!(matches!(
        cut(b"not ogg", 0.0, 1.0, &mut out),
        Err(MixError::Unreadable(crate::TrackProblem::NotOgg))
    ));
    assert!(out.is_empty());
}

#[test]
fn duration_is_the_last_granule_less_the_pre_skip() {
    // Track A ends at 3.4 s; the mix at B's end, 6.8 s.
    assert!((duration_seconds(track_a()).unwrap() - 3.4).abs() < 1e-9);
    assert!((duration_seconds(&mix_ab().0).unwrap() - 6.8).abs() < 1e-9);
    assert!(matches!(
        duration_seconds(b""),
        Err(MixError::Unreadable(_))
    ));
}
