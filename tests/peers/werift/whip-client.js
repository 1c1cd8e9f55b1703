#!/usr/bin/env node
// WHIP client on werift (npm, pure TypeScript WebRTC) + opusscript (libopus in wasm).
//
//   node tests/peers/werift/whip-client.js --whip http://127.0.0.1:8080/whip/call-1 \
//     --token TOKEN --mode session|gateway --audio a.wav [--audio2 b.wav] --seconds 8 --out DIR \
//     [--timeout 30] [--stream-id ID] [--stream-id2 ID] [--location DE]
//
// Dependencies: `npm ci` in tests/peers/werift (tests/peers/install.sh does it).
// Each audio m-line is a sendrecv transceiver with its own MediaStream (msid stream id);
// the WAV is Opus-encoded (20 ms, looped) and written as RTP once connected. What the
// server sends back is decoded and written to DIR/received-<mid>.wav.
// Prints one JSON object on the last stdout line; exit 0 only on success.
'use strict';
const fs = require('fs');
const path = require('path');
const crypto = require('crypto');
const { RTCPeerConnection, MediaStreamTrack, MediaStream, RtpPacket, RtpHeader } = require('werift');
const OpusScript = require('opusscript');

const RATE = 48000;
const FRAME = RATE / 50;

function log(...a) {
  process.stderr.write(new Date().toISOString().slice(11, 19) + ' ' + a.join(' ') + '\n');
}

function usage(msg) {
  process.stderr.write(`${msg}\nusage: whip-client.js --whip URL [--token T] [--mode session|gateway] ` +
    '--audio A.wav [--audio2 B.wav] [--seconds N] [--out DIR] [--timeout S] [--stream-id ID] ' +
    '[--stream-id2 ID] [--location CC]\n');
  process.exit(2);
}

function parseArgs(argv) {
  const a = { token: null, mode: 'session', audio2: null, seconds: 5, out: '.', timeout: 30,
    streamId: null, streamId2: null, location: null };
  const keys = { '--whip': 'whip', '--token': 'token', '--mode': 'mode', '--audio': 'audio',
    '--audio2': 'audio2', '--seconds': 'seconds', '--out': 'out', '--timeout': 'timeout',
    '--stream-id': 'streamId', '--stream-id2': 'streamId2', '--location': 'location' };
  for (let i = 0; i < argv.length; i++) {
    let k = argv[i];
    let v;
    if (k === '-h' || k === '--help') usage('');
    if (k.includes('=')) [k, v] = [k.slice(0, k.indexOf('=')), k.slice(k.indexOf('=') + 1)];
    else v = argv[++i];
    if (!(k in keys) || v === undefined) usage(`bad argument ${argv[i]}`);
    a[keys[k]] = v;
  }
  a.seconds = Number(a.seconds);
  a.timeout = Number(a.timeout);
  if (!a.whip || !a.audio) usage('--whip and --audio are required');
  if (!['session', 'gateway'].includes(a.mode)) usage('--mode must be session or gateway');
  if (!(a.seconds >= 0) || !(a.timeout > 0)) usage('bad --seconds or --timeout');
  if (a.mode === 'gateway' && !a.audio2) a.audio2 = a.audio;
  if (a.mode === 'session') a.audio2 = null;
  for (const f of [a.audio, a.audio2].filter(Boolean)) if (!fs.existsSync(f)) usage(`no such file: ${f}`);
  fs.mkdirSync(a.out, { recursive: true });
  return a;
}

// ------------------------------------------------------------ WAV

function readWavMono48k(file) {
  const b = fs.readFileSync(file);
  if (b.toString('ascii', 0, 4) !== 'RIFF' || b.toString('ascii', 8, 12) !== 'WAVE') throw new Error(`${file}: not a WAV`);
  let off = 12, fmt = null, data = null;
  while (off + 8 <= b.length) {
    const id = b.toString('ascii', off, off + 4);
    const size = b.readUInt32LE(off + 4);
    if (id === 'fmt ') fmt = { format: b.readUInt16LE(off + 8), ch: b.readUInt16LE(off + 10),
      rate: b.readUInt32LE(off + 12), bits: b.readUInt16LE(off + 22) };
    if (id === 'data') data = b.subarray(off + 8, Math.min(b.length, off + 8 + size));
    off += 8 + size + (size & 1);
  }
  if (!fmt || !data) throw new Error(`${file}: no fmt or data chunk`);
  if (fmt.bits !== 16) throw new Error(`${file}: only 16-bit PCM is supported`);
  const n = Math.floor(data.length / 2 / fmt.ch);
  let mono = new Int16Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let c = 0; c < fmt.ch; c++) s += data.readInt16LE((i * fmt.ch + c) * 2);
    mono[i] = Math.round(s / fmt.ch);
  }
  if (fmt.rate !== RATE) {
    const ratio = fmt.rate / RATE;
    const out = new Int16Array(Math.floor(n / ratio));
    for (let i = 0; i < out.length; i++) {
      const x = i * ratio, j = Math.floor(x), f = x - j;
      const s0 = mono[j] || 0, s1 = j + 1 < n ? mono[j + 1] : s0;
      out[i] = Math.round(s0 + (s1 - s0) * f);
    }
    mono = out;
  }
  if (mono.length === 0) throw new Error(`${file}: no samples`);
  return mono;
}

class WavSink {
  constructor(file) {
    this.file = file;
    this.chunks = [];
    this.samples = 0;
    this.sumsq = 0;
    this.voicedFrames = 0;
  }
  write(pcm /* Int16Array mono */) {
    this.chunks.push(Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength));
    this.samples += pcm.length;
    let frameSq = 0, inFrame = 0;
    for (let i = 0; i < pcm.length; i++) {
      const s = pcm[i];
      this.sumsq += s * s;
      frameSq += s * s;
      if (++inFrame === FRAME) {
        if (Math.sqrt(frameSq / FRAME) / 32768 > 0.01) this.voicedFrames++;
        frameSq = 0; inFrame = 0;
      }
    }
  }
  close() {
    const data = Buffer.concat(this.chunks);
    const h = Buffer.alloc(44);
    h.write('RIFF', 0); h.writeUInt32LE(36 + data.length, 4); h.write('WAVE', 8);
    h.write('fmt ', 12); h.writeUInt32LE(16, 16); h.writeUInt16LE(1, 20); h.writeUInt16LE(1, 22);
    h.writeUInt32LE(RATE, 24); h.writeUInt32LE(RATE * 2, 28); h.writeUInt16LE(2, 32); h.writeUInt16LE(16, 34);
    h.write('data', 36); h.writeUInt32LE(data.length, 40);
    fs.writeFileSync(this.file, Buffer.concat([h, data]));
  }
  stats() {
    const rms = this.samples ? Math.sqrt(this.sumsq / this.samples) / 32768 : 0;
    return { received_seconds: +(this.samples / RATE).toFixed(3), received_rms: +rms.toFixed(5),
      received_voiced_seconds: +(this.voicedFrames * 0.02).toFixed(2), received_wav: path.resolve(this.file) };
  }
}

// ------------------------------------------------------------ SDP / HTTP

function audioMlines(sdp) {
  const out = [];
  let cur = null;
  for (const l of sdp.split(/\r?\n/)) {
    if (l.startsWith('m=')) {
      cur = l.startsWith('m=audio') ? { mid: null, stream_id: null, direction: 'sendrecv' } : null;
      if (cur) out.push(cur);
    } else if (cur) {
      if (l.startsWith('a=mid:')) cur.mid = l.slice(6).trim();
      else if (l.startsWith('a=msid:')) { const s = l.slice(7).split(' ')[0]; cur.stream_id = s === '-' ? null : s; }
      else if (/^a=(sendrecv|sendonly|recvonly|inactive)$/.test(l)) cur.direction = l.slice(2);
    }
  }
  return out;
}

function authHeaders(token, extra) {
  const h = Object.assign({}, extra || {});
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}

async function putParticipant(args, id, location) {
  const u = new URL(args.whip);
  const m = u.pathname.match(/^(.*)\/whip\/([^/]+)\/?$/);
  if (!m) throw new Error(`cannot derive the call id from ${args.whip}`);
  const loc = { country: location.split('-')[0].toUpperCase() };
  if (location.includes('-')) loc.subdivision = location.toUpperCase();
  const url = `${u.origin}${m[1]}/v1/calls/${m[2]}/participants/${encodeURIComponent(id)}`;
  const r = await fetch(url, { method: 'PUT', headers: authHeaders(args.token, { 'Content-Type': 'application/json' }),
    body: JSON.stringify({ location: loc }), signal: AbortSignal.timeout(20000) });
  if (!r.ok) throw new Error(`PUT ${url} answered ${r.status}: ${(await r.text()).slice(0, 300)}`);
}

// ------------------------------------------------------------ main

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const t0 = Date.now();
  const ver = (p) => {
    let dir = path.dirname(require.resolve(p));
    while (!fs.existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
    return JSON.parse(fs.readFileSync(path.join(dir, 'package.json'))).version;
  };
  const result = { client: 'werift', version: `werift ${ver('werift')} (opusscript ${ver('opusscript')}, Node.js ${process.version})`,
    mode: args.mode, connected: false, session_url: null, delete_status: null, tracks: [], timings: {}, error: null };
  const mark = (k) => { result.timings[k] = (Date.now() - t0) / 1000; };
  let printed = false;
  let sessionUrl = null;
  let pc = null;
  const tracks = [];

  const emit = () => {
    if (printed) return 1;
    printed = true;
    mark('total');
    const ok = !result.error && result.connected && result.delete_status >= 200 && result.delete_status < 300;
    if (!ok && !result.error) result.error = 'did not complete (not connected or DELETE failed)';
    process.stdout.write(JSON.stringify(result) + '\n');
    return ok ? 0 : 1;
  };
  const fail = (msg) => { if (!result.error) result.error = String(msg); log('error:', msg); };

  // hard deadline: setup + sending + teardown
  const hard = setTimeout(async () => {
    fail(`hard timeout after ${Math.round(args.timeout + args.seconds + 45)} s`);
    const code = emit();
    process.exit(code || 1);
  }, (args.timeout + args.seconds + 45) * 1000);
  hard.unref();

  try {
    const files = [args.audio, args.audio2].filter(Boolean);
    // werift skips loopback addresses like aioice does; add 127.0.0.1 for loopback tests
    pc = new RTCPeerConnection({ iceServers: [], iceAdditionalHostAddresses: ['127.0.0.1'] });
    pc.connectionStateChange.subscribe((s) => log('connectionState', s));
    const ids = [args.streamId, args.streamId2];
    files.forEach((f, i) => {
      const sid = ids[i] || `werift-${'ab'[i]}-${crypto.randomBytes(6).toString('hex')}`;
      const track = new MediaStreamTrack({ kind: 'audio' });
      const stream = new MediaStream({ id: sid, tracks: [track] });
      const tr = pc.addTransceiver(track, { direction: 'sendrecv', streams: [stream] });
      const t = { file: f, samples: readWavMono48k(f), track, tr, streamId: sid, sent: 0, rxPackets: 0,
        encoder: new OpusScript(RATE, 1, OpusScript.Application.VOIP), decoder: new OpusScript(RATE, 1), sink: null };
      t.encoder.setBitrate(32000);
      tr.onTrack.subscribe((remote) => {
        log('remote track on mid', tr.mid);
        remote.onReceiveRtp.subscribe((rtp) => {
          t.rxPackets++;
          if (!t.sink) return;
          try {
            const pcm = t.decoder.decode(rtp.payload);
            t.sink.write(new Int16Array(pcm.buffer, pcm.byteOffset, pcm.length / 2));
          } catch (e) {
            t.decodeErrors = (t.decodeErrors || 0) + 1;
          }
        });
      });
      tracks.push(t);
    });

    await pc.setLocalDescription(await pc.createOffer());
    if (pc.iceGatheringState !== 'complete') {
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, 3000);
        pc.iceGatheringStateChange.subscribe((s) => { if (s === 'complete') { clearTimeout(timer); resolve(); } });
      });
    }
    const offer = pc.localDescription.sdp;
    mark('offer');
    const mlines = audioMlines(offer);
    log('offer', offer.length, 'bytes, audio m-lines', JSON.stringify(mlines));
    tracks.forEach((t, i) => { t.mid = t.tr.mid; t.sink = new WavSink(path.join(args.out, `received-${t.mid}.wav`)); });
    if (args.location) for (const t of tracks) await putParticipant(args, t.streamId, args.location);

    const resp = await fetch(args.whip, { method: 'POST', body: offer, signal: AbortSignal.timeout(20000),
      headers: authHeaders(args.token, { 'Content-Type': 'application/sdp' }) });
    const answer = await resp.text();
    if (resp.status !== 201) throw new Error(`WHIP POST answered ${resp.status}: ${answer.slice(0, 300)}`);
    const loc = resp.headers.get('location');
    if (!loc) throw new Error('WHIP POST 201 without a Location header');
    sessionUrl = new URL(loc, args.whip).href;
    result.session_url = sessionUrl;
    mark('answer');
    log('POST 201, session', sessionUrl);
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });

    const left = args.timeout * 1000 - (Date.now() - t0);
    await new Promise((resolve, reject) => {
      if (pc.connectionState === 'connected') return resolve();
      const timer = setTimeout(() => reject(new Error(
        `not connected within the ${args.timeout} s setup timeout (connectionState ${pc.connectionState}, ` +
        `iceConnectionState ${pc.iceConnectionState})`)), Math.max(1000, left));
      pc.connectionStateChange.subscribe((s) => {
        if (s === 'connected') { clearTimeout(timer); resolve(); }
        if (s === 'failed' || s === 'closed') { clearTimeout(timer); reject(new Error(`connectionState ${s}`)); }
      });
    });
    result.connected = true;
    mark('connected');
    log('connected; sending for', args.seconds, 's');

    // real-time sender: one 20 ms Opus packet per track per 20 ms of wall clock
    const start = Date.now();
    const total = Math.round(args.seconds * 50);
    const seq0 = tracks.map(() => crypto.randomInt(0, 65535));
    const ts0 = tracks.map(() => crypto.randomInt(0, 2 ** 31));
    await new Promise((resolve, reject) => {
      const tick = () => {
        const due = Math.min(total, Math.floor((Date.now() - start) / 20) + 1);
        tracks.forEach((t, i) => {
          while (t.sent < due) {
            const off = (t.sent * FRAME) % t.samples.length;
            let pcm = t.samples.subarray(off, off + FRAME);
            if (pcm.length < FRAME) {
              const full = new Int16Array(FRAME);
              full.set(pcm);
              full.set(t.samples.subarray(0, FRAME - pcm.length), pcm.length);
              pcm = full;
            }
            const opus = t.encoder.encode(Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength), FRAME);
            const header = new RtpHeader({ payloadType: 111, marker: t.sent === 0,
              sequenceNumber: (seq0[i] + t.sent) & 0xffff, timestamp: (ts0[i] + t.sent * FRAME) >>> 0 });
            t.track.writeRtp(new RtpPacket(header, Buffer.from(opus)));
            t.sent++;
          }
        });
        if (pc.connectionState !== 'connected') return reject(new Error(`connection lost while sending: ${pc.connectionState}`));
        if (tracks.every((t) => t.sent >= total) && Date.now() - start >= args.seconds * 1000) return resolve();
        setTimeout(tick, 10);
      };
      tick();
    });
    mark('sent');
  } catch (e) {
    fail(e && e.message ? e.message : e);
  }

  if (sessionUrl) {
    try {
      const r = await fetch(sessionUrl, { method: 'DELETE', headers: authHeaders(args.token), signal: AbortSignal.timeout(35000) });
      result.delete_status = r.status;
      log('DELETE', r.status);
    } catch (e) {
      fail(`DELETE failed: ${e.message}`);
    }
  }
  try { if (pc) await Promise.race([pc.close(), new Promise((r) => setTimeout(r, 3000))]); } catch (e) { log('close failed:', e.message); }
  for (const t of tracks) {
    const entry = { mid: t.mid || t.tr.mid, stream_id: t.streamId, audio_file: path.resolve(t.file),
      sent_packets: t.sent, sent_seconds: +(t.sent * 0.02).toFixed(2), received_packets: t.rxPackets };
    if (t.decodeErrors) entry.decode_errors = t.decodeErrors;
    const sink = t.sink || new WavSink(path.join(args.out, `received-${entry.mid}.wav`));
    sink.close();
    Object.assign(entry, sink.stats());
    result.tracks.push(entry);
  }
  const code = emit();
  process.exit(code);
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ client: 'werift', connected: false, tracks: [], error: `fatal: ${e && e.stack || e}` }) + '\n');
  process.exit(1);
});
