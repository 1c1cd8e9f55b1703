use super::*;
use crate::test_support::*;
use crate::{TrackProblem, duration_seconds};
use hearken_core::track::DEFAULT_PRE_SKIP;

/// RMS of a sine is its peak / sqrt(2): -12 dBFS peak - 3.01 dB = -15.01 dBFS.
const TONE_RMS_DBFS: f64 = TONE_PEAK_DBFS - 3.0103;

#[test]
fn tones_land_at_their_call_times() {
    let (bytes, report) = mix_ab();
    let pcm = decode(bytes);

    let a = window(&pcm, 1.2, 2.8);
    let (p440, p1000) = (tone_power(a, A_FREQ), tone_power(a, B_FREQ));
    println!(
        "1.2-2.8 s: {:.1} dBFS, 440/1000 Hz power ratio {:.0}",
        rms_dbfs(a),
        p440 / p1000
    );
    assert!(p440 > 1000.0 * p1000);
    assert!((rms_dbfs(a) - TONE_RMS_DBFS).abs() < 2.0);

    let b = window(&pcm, 4.2, 5.8);
    let (p440, p1000) = (tone_power(b, A_FREQ), tone_power(b, B_FREQ));
    println!(
        "4.2-5.8 s: {:.1} dBFS, 1000/440 Hz power ratio {:.0}",
        rms_dbfs(b),
        p1000 / p440
    );
    assert!(p1000 > 1000.0 * p440);
    assert!((rms_dbfs(b) - TONE_RMS_DBFS).abs() < 2.0);

    for (from, to) in [(0.0, 0.9), (3.3, 3.7), (6.3, 6.7)] {
        let quiet = rms_dbfs(window(&pcm, from, to));
        println!("{from}-{to} s: {quiet:.1} dBFS");
        assert!(quiet < -50.0, "{from}-{to} s: {quiet} dBFS");
    }

    // The longer track, B, ends at 6.8 s.
    let expected = B_END as f64 / SECOND as f64;
    assert!((report.duration_seconds - expected).abs() < 0.02);
    assert!((pcm.len() as f64 / SECOND as f64 - expected).abs() < 0.02);
    assert!((duration_seconds(bytes).unwrap() - expected).abs() < 0.02);
    assert_eq!(report.tracks[0].decoded_seconds, A_END as f64 / 48_000.0);
    assert_eq!(report.tracks[1].decoded_seconds, B_END as f64 / 48_000.0);
    assert!(
        report
            .tracks
            .iter()
            .all(|t| t.bad_packets == 0 && !t.ended_abruptly && t.unreadable.is_none())
    );
}

#[test]
fn mix_keeps_each_track_in_place() {
    // Where a player of each track alone hears the tone start, the mix has it.
    let (bytes, _) = mix_ab();
    let pcm = decode(bytes);
    for (track, from) in [(track_a(), 0.5), (track_b(), 3.8)] {
        let alone = onset(&decode(track), from);
        let mixed = onset(&pcm, from);
        println!("onset alone {alone}, in the mix {mixed} (samples)");
        assert!(mixed.abs_diff(alone) <= 120, "{mixed} vs {alone}");
    }
}

#[test]
fn mix_stream_is_on_the_20ms_grid() {
    let (bytes, _) = mix_ab();
    let (packets, clean) = read_packets(bytes);
    assert!(clean);
    let head = &packets[0].data;
    assert_eq!(head[9], 1, "mono");
    assert_eq!(u16::from_le_bytes([head[10], head[11]]), 960, "pre-skip");
    let audio = &packets[2..];
    // 6.8 s is 340 frames of 20 ms, plus the pre-skip's packet.
    assert_eq!(audio.len(), 341);
    for p in audio {
        assert_eq!(hearken_core::opus::packet_samples(&p.data), Ok(960));
    }
    assert_eq!(audio.last().unwrap().absgp_page(), 960 + B_END);
    assert!(audio.last().unwrap().last_in_stream());
}

#[test]
fn a_muted_span_is_silent_and_other_tracks_remain() {
    let mut a = input("a", track_a());
    a.muted = vec![(1.0, 3.0)];
    let (bytes, report) = mix_of(&[a, input("b", track_b())]);
    let pcm = decode(&bytes);
    let muted = rms_dbfs(window(&pcm, 1.05, 2.95));
    println!("muted 1.05-2.95 s: {muted:.1} dBFS");
    assert!(muted < -50.0);
    let b = window(&pcm, 4.2, 5.8);
    assert!(tone_power(b, B_FREQ) > 1000.0 * tone_power(b, A_FREQ));
    // Frames 50-149 are call time [1.0, 3.0): zeroed before they are measured.
    let levels = &report.tracks[0].levels_dbfs;
    assert!(levels[50..150].iter().all(|&l| l == -120.0));
    assert!(levels[150] > -120.0, "the tail after the span is kept");
}

#[test]
fn muted_spans_widen_to_whole_samples() {
    let track = TrackInput {
        name: "a".into(),
        ogg: &[],
        muted: vec![(1.0 / 96_000.0, 1.5 / 48_000.0), (-1.0, 0.0)],
    };
    // Half a sample from the start widens to [0, 2); a negative start is 0.
    assert_eq!(muted_samples(&track).unwrap(), vec![(0, 2), (0, 0)]);
}

#[test]
fn invalid_muted_spans_are_refused() {
    for span in [(2.0, 1.0), (f64::NAN, 1.0), (0.0, f64::INFINITY)] {
        let mut a = input("a", track_a());
        a.muted = vec![span];
        let mut out = Vec::new();
        let error = mix(&[a], &MixOptions::default(), &mut out, &mut |_| {}).unwrap_err();
        assert!(matches!(error, MixError::InvalidMutedSpan { ref track, .. } if track == "a"));
        assert!(out.is_empty());
    }
}

#[test]
fn levels_follow_the_tone() {
    let (_, report) = mix_ab();
    let a = &report.tracks[0].levels_dbfs;
    let b = &report.tracks[1].levels_dbfs;
    // One level per 20 ms frame of the 6.8 s mix, for every track.
    assert_eq!(a.len(), 340);
    assert_eq!(b.len(), 340);
    // Frames 55-144 are 1.1-2.9 s, inside A's tone; B's tone: frames 205-294.
    for level in a[55..145].iter().chain(&b[205..295]) {
        assert!((f64::from(*level) - TONE_RMS_DBFS).abs() < 1.0, "{level}");
    }
    // Silence: before A's tone and after its end; B before and after its tone.
    for level in a[..45]
        .iter()
        .chain(&a[160..])
        .chain(&b[..195])
        .chain(&b[310..])
    {
        assert!(*level < -60.0, "{level}");
    }
    // A's file ends at 3.4 s: nothing after it.
    assert!(a[170..].iter().all(|&l| l == -120.0));
}

#[test]
fn output_gain_is_applied() {
    // Track B's packets re-muxed with an output gain of -6 dB (Q7.8).
    let (packets, _) = read_packets(track_b());
    let head = hearken_core::ogg::OpusHead {
        channels: 2,
        pre_skip: 3840,
        input_sample_rate: 48_000,
        output_gain: -6 * 256,
    };
    let mut w = hearken_core::ogg::OggOpusWriter::new(1, &head, "test", &[]);
    for p in &packets[2..] {
        let samples = hearken_core::opus::packet_samples(&p.data).unwrap();
        w.push_packet(&p.data, samples).unwrap();
    }
    w.finish();
    let quiet = w.poll_output();
    let (_, report) = mix_of(&[input("b", &quiet)]);
    for level in &report.tracks[0].levels_dbfs[205..295] {
        assert!(
            (f64::from(*level) - (TONE_RMS_DBFS - 6.0)).abs() < 1.0,
            "{level}"
        );
    }
}

#[test]
fn a_truncated_track_yields_its_whole_pages() {
    let full = track_a();
    let pages = pages(full);
    // Cut in the middle of the page holding the middle of the file.
    let middle = pages.iter().position(|p| p.end > full.len() / 2).unwrap();
    let page = pages[middle];
    let truncated = &full[..(page.start + page.end) / 2];
    let expected = (pages[middle - 1].granule - u64::from(DEFAULT_PRE_SKIP)) as f64 / 48_000.0;
    assert!(expected > 0.5, "the cut keeps some audio: {expected}");

    let (bytes, report) = mix_of(&[input("a", truncated), input("b", track_b())]);
    let a = &report.tracks[0];
    assert!(a.ended_abruptly);
    assert_eq!(a.unreadable, None);
    assert!((a.decoded_seconds - expected).abs() < 1e-9);
    assert!((report.duration_seconds - 6.8).abs() < 1e-9);
    assert!((decode(&bytes).len() as f64 / 48_000.0 - 6.8).abs() < 1e-9);

    let (bytes, report) = mix_of(&[input("a", truncated)]);
    assert!((report.duration_seconds - expected).abs() < 1e-9);
    assert!((duration_seconds(&bytes).unwrap() - expected).abs() < 1e-9);
}

#[test]
fn truncation_anywhere_never_panics() {
    let full = track_a();
    let mut last = 0.0;
    for len in (0..=full.len()).step_by(full.len() / 40) {
        let mut out = Vec::new();
        match mix(
            &[input("a", &full[..len])],
            &MixOptions::default(),
            &mut out,
            &mut |_| {},
        ) {
            Ok(report) => {
                // A longer prefix never holds less audio.
                assert!(report.duration_seconds >= last);
                last = report.duration_seconds;
                assert!((duration_seconds(&out).unwrap() - last).abs() < 1e-9);
            }
            Err(MixError::NoReadableTrack(reports)) => assert!(reports[0].unreadable.is_some()),
            Err(e) => panic!("{e}"),
        }
    }
    assert!(last <= 3.4);
}

#[test]
fn unreadable_tracks_are_skipped_and_named() {
    let garbage = b"this is not an ogg file, just some bytes".repeat(10);
    let mut vorbis = Vec::new();
    let mut w = ogg::PacketWriter::new(&mut vorbis);
    w.write_packet(&b"\x01vorbis"[..], 5, ogg::PacketWriteEndInfo::EndStream, 0)
        .unwrap();
    drop(w);
    let (bytes, report) = mix_of(&[
        input("garbage", &garbage),
        input("b", track_b()),
        input("vorbis", &vorbis),
    ]);
    assert_eq!(report.tracks[0].name, "garbage");
    assert_eq!(report.tracks[0].unreadable, Some(TrackProblem::NotOgg));
    assert!(report.tracks[0].levels_dbfs.is_empty());
    assert_eq!(report.tracks[2].unreadable, Some(TrackProblem::NotOpus));
    assert_eq!(report.tracks[1].unreadable, None);
    assert!((report.duration_seconds - 6.8).abs() < 1e-9);
    let pcm = decode(&bytes);
    let b = window(&pcm, 4.2, 5.8);
    assert!(tone_power(b, B_FREQ) > 1000.0 * tone_power(b, A_FREQ));
}

#[test]
fn no_readable_track_is_an_error() {
    let mut out = Vec::new();
    let options = MixOptions::default();
    let error = mix(&[input("x", b"nope")], &options, &mut out, &mut |_| {}).unwrap_err();
    match error {
        MixError::NoReadableTrack(reports) => {
            assert_eq!(reports[0].name, "x");
            assert_eq!(reports[0].unreadable, Some(TrackProblem::NotOgg));
        }
        e => panic!("{e}"),
    }
    assert!(matches!(
        mix(&[], &options, &mut out, &mut |_| {}),
        Err(MixError::NoTracks)
    ));
    assert!(out.is_empty());
}

#[test]
fn bad_packets_are_counted_and_silenced() {
    // 10 tone packets, a code 3 packet with zero frames (no duration: taken
    // as 20 ms like the one before), a code 3 CBR packet of two frames whose
    // 3 bytes cannot split in two (libopus refuses it: 40 ms), 10 more tone
    // packets.
    let tone = encode(opus::Channels::Mono, (0.0, 0.4), A_FREQ, (0.0, 0.4));
    let zero_frames = vec![(31 << 3) | 3, 0];
    let odd_cbr = vec![(31 << 3) | 3, 2, 1, 2, 3];
    let head = hearken_core::ogg::OpusHead {
        channels: 2,
        pre_skip: 0,
        input_sample_rate: 48_000,
        output_gain: 0,
    };
    let mut w = hearken_core::ogg::OggOpusWriter::new(1, &head, "test", &[]);
    for (_, p) in &tone[..10] {
        w.push_packet(p, 960).unwrap();
    }
    w.push_packet(&zero_frames, 960).unwrap();
    w.push_packet(&odd_cbr, 1920).unwrap();
    for (_, p) in &tone[10..] {
        w.push_packet(p, 960).unwrap();
    }
    w.finish();
    let bytes = w.poll_output();

    let (_, report) = mix_of(&[input("a", &bytes)]);
    let a = &report.tracks[0];
    assert_eq!(a.bad_packets, 2);
    // 20 packets of 20 ms, then 20 ms and 40 ms of silence.
    assert!((a.decoded_seconds - 0.46).abs() < 1e-9);
    assert_eq!(a.levels_dbfs.len(), 23);
    assert!(a.levels_dbfs[10..13].iter().all(|&l| l == -120.0));
    assert!(a.levels_dbfs[5..10].iter().all(|&l| l > -20.0));
    assert!(a.levels_dbfs[15..].iter().all(|&l| l > -20.0));
}

#[test]
fn random_packets_never_panic() {
    // Track B with every 7th packet replaced by pseudo-random bytes (some
    // empty), re-muxed so the pages are valid.
    let (packets, _) = read_packets(track_b());
    let mut w = hearken_core::ogg::OggOpusWriter::new(
        1,
        &hearken_core::ogg::OpusHead {
            channels: 2,
            pre_skip: 3840,
            input_sample_rate: 48_000,
            output_gain: 0,
        },
        "test",
        &[],
    );
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut empty = 0;
    let audio = &packets[2..];
    let twenty_ms = |i: usize| hearken_core::opus::packet_samples(&audio[i].data) == Ok(960);
    for (i, p) in audio.iter().enumerate() {
        // Only real 20 ms packets after another are replaced, so the silence
        // for an empty one (as long as the packet before) fills its place.
        if i % 7 == 3 && twenty_ms(i) && twenty_ms(i - 1) {
            // One in three replaced packets is empty: surely bad.
            let len = if i % 21 == 3 {
                0
            } else {
                (next() % 60) as usize
            };
            empty += usize::from(len == 0);
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Granules as the packets' TOCs count them, so every packet is
            // within the stream's length and gets decoded.
            let samples = hearken_core::opus::packet_samples(&data).unwrap_or(960);
            w.push_packet(&data, samples).unwrap();
        } else {
            let samples = hearken_core::opus::packet_samples(&p.data).unwrap();
            w.push_packet(&p.data, samples).unwrap();
        }
    }
    w.finish();
    let bytes = w.poll_output();
    let (out, report) = mix_of(&[input("b", &bytes)]);
    println!(
        "random packets: {} bad, {empty} empty",
        report.tracks[0].bad_packets
    );
    assert!(empty > 0);
    assert!(report.tracks[0].bad_packets >= empty as u64);
    // The random packets' TOCs may say other lengths than 20 ms; the track
    // still runs to near its end.
    assert!(report.duration_seconds > 6.0);
    assert_eq!(duration_seconds(&out).unwrap(), report.duration_seconds);
}

#[test]
fn same_tracks_give_the_same_bytes() {
    let (first, _) = mix_ab();
    let (again, _) = mix_of(&[input("a", track_a()), input("b", track_b())]);
    assert!(first == &again);
}

#[test]
fn progress_rises_by_at_most_a_percent_and_ends_at_one() {
    let mut calls = Vec::new();
    let mut out = Vec::new();
    mix(
        &[input("a", track_a()), input("b", track_b())],
        &MixOptions::default(),
        &mut out,
        &mut |f| calls.push(f),
    )
    .unwrap();
    assert_eq!(calls.first(), Some(&0.0));
    assert_eq!(calls.last(), Some(&1.0));
    assert!(calls.windows(2).all(|w| w[1] > w[0]));
    // 0.0, one call per percent 1-99, 1.0.
    assert!(calls.len() <= 101, "{}", calls.len());
    assert!(calls.len() > 50);
}

#[test]
fn invalid_options_are_a_typed_error() {
    let options = MixOptions {
        complexity: 11,
        ..MixOptions::default()
    };
    let mut out = Vec::new();
    let error = mix(&[input("a", track_a())], &options, &mut out, &mut |_| {});
    assert!(matches!(error, Err(MixError::Opus(_))));
}

/// Release timing: `cargo test --release -p hearken-mix -- --ignored --nocapture`.
#[test]
#[ignore]
#[allow(clippy::disallowed_methods)] // a timing needs the clock
fn time_a_minute_of_two_tracks() {
    let frames_a = encode(opus::Channels::Mono, (0.0, 60.0), A_FREQ, (0.0, 60.0));
    let frames_b = encode(opus::Channels::Stereo, (0.0, 60.0), B_FREQ, (0.0, 60.0));
    let a = record(&frames_a, None);
    let b = record(&frames_b, None);
    let mut out = Vec::new();
    let started = std::time::Instant::now();
    let report = mix(
        &[input("a", &a), input("b", &b)],
        &MixOptions::default(),
        &mut out,
        &mut |_| {},
    )
    .unwrap();
    let elapsed = started.elapsed();
    println!(
        "mixed {:.0} s of two tracks in {:.1} ms ({:.0}x real time), {} bytes",
        report.duration_seconds,
        elapsed.as_secs_f64() * 1000.0,
        report.duration_seconds / elapsed.as_secs_f64(),
        out.len()
    );
}
