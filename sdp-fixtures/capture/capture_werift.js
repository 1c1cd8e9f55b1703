// Capture a werift (npm, pure TypeScript WebRTC) SDP offer: one audio transceiver, sendonly.
//   mkdir -p /tmp/werift && cd /tmp/werift && npm init -y && npm install werift@0.24.4
//   unshare -n bash -c 'ip link set lo up; NODE_PATH=/tmp/werift/node_modules node capture_werift.js OUTDIR'
// Writes OUTDIR/werift-audio-sendonly.sdp byte-for-byte and OUTDIR/werift-version.txt.
const fs = require('fs');
const path = require('path');
const { RTCPeerConnection, MediaStreamTrack } = require('werift');

const out = process.argv[2] || '.';
(async () => {
  // werift skips loopback like aioice does; in a lo-only netns add 127.0.0.1 explicitly.
  const pc = new RTCPeerConnection({ iceServers: [], iceAdditionalHostAddresses: ['127.0.0.1'] });
  pc.addTransceiver(new MediaStreamTrack({ kind: 'audio' }), { direction: 'sendonly' });
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.iceGatheringStateChange.subscribe((s) => s === 'complete' && resolve());
    setTimeout(resolve, 5000);
  });
  fs.mkdirSync(out, { recursive: true });
  const file = path.join(out, 'werift-audio-sendonly.sdp');
  fs.writeFileSync(file, pc.localDescription.sdp);
  // package.json is not in werift's "exports"; read it from disk next to the resolved module
  let dir = path.dirname(require.resolve('werift'));
  while (!fs.existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  const version = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'))).version;
  fs.writeFileSync(path.join(out, 'werift-version.txt'), `werift ${version} (Node.js ${process.version})\n`);
  console.log(`wrote ${file} (${pc.localDescription.sdp.length} bytes)`);
  await pc.close();
  process.exit(0);
})();
