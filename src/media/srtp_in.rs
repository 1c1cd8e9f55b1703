//! SRTP receive for connected WHIP sessions, without str0m's receive path.
//!
//! Why: at 1,000 sessions every packet's `Rtc` is cold in the cache, and
//! str0m's receive (stream lookup, NACK and depacketizing registers, sample
//! assembly, then `poll_output` over ICE, DTLS and SCTP) was most of the
//! server's CPU per packet (loadtest/RESULTS.md, "Where the time goes
//! now"). Once a session is connected and str0m has mapped an SSRC to its
//! m-line, the engine decrypts that SSRC's packets here, against a record
//! of a few hundred bytes, and hands them on as the native and SIP ingests
//! do; str0m keeps ICE, DTLS, RTCP and every packet of an SSRC it has not
//! mapped.
//!
//! What is written here is only what str0m does not export: the session key
//! derivation (RFC 3711 §4.3.1, and RFC 7714 §11 for AES-GCM), the packet
//! index (RFC 3711 §3.3.1, Appendix A) and replay protection (§3.3.2). The
//! ciphers and HMAC-SHA1 are str0m's crypto provider's (aws-lc-rs), the
//! code str0m's own receive runs. No maintained crate does this without a
//! second crypto stack (`webrtc-srtp` brings its own) or a C library
//! (`libsrtp` bindings).
//!
//! Order per packet, as RFC 3711 §3.3 has it: estimate the index, reject a
//! replay, authenticate (and decrypt), and only then move the replay window
//! and the rollover counter, so a forged packet changes nothing.

use std::fmt;

use str0m::config::CryptoProvider;
use str0m::crypto::dtls::SrtpProfile;
use str0m::crypto::{
    AeadAes128Gcm, AeadAes128GcmCipher, AeadAes256Gcm, AeadAes256GcmCipher, Aes128CmSha1_80,
    Aes128CmSha1_80Cipher, CryptoError, Sha1HmacProvider, SrtpProvider,
};

/// RFC 3711 §4.3.1 key derivation labels (RTP only: RTCP stays str0m's).
const LABEL_RTP_ENCRYPTION: u8 = 0;
const LABEL_RTP_AUTHENTICATION: u8 = 1;
const LABEL_RTP_SALT: u8 = 2;

/// How far behind the highest index a packet may arrive and still be
/// accepted once (RFC 3711 §3.3.2 asks for at least 64).
const REPLAY_WINDOW: u64 = 128;

/// The SRTP keys a DTLS handshake exported (RFC 5764 §4.2): client write
/// key, server write key, client write salt, server write salt.
#[derive(Clone)]
pub struct SrtpKeying {
    /// The negotiated protection profile.
    pub profile: SrtpProfile,
    /// The exported keying material, `profile.keying_material_len()` bytes.
    pub material: Vec<u8>,
    /// Whether this end was the DTLS client.
    pub active: bool,
}

impl fmt::Debug for SrtpKeying {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the material itself.
        f.debug_struct("SrtpKeying")
            .field("profile", &self.profile)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// Why a packet was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SrtpError {
    /// Too short for its header and tag, or not RTP version 2.
    #[error("malformed SRTP packet")]
    Malformed,
    /// Already received, or older than the replay window.
    #[error("replayed or too old SRTP packet")]
    Replay,
    /// The authentication tag did not verify (or decryption failed).
    #[error("SRTP authentication failed")]
    Auth,
}

/// The keys of one direction, made ready for the cipher.
enum Cipher {
    Aes128CmSha1_80 {
        cipher: Box<dyn Aes128CmSha1_80Cipher>,
        auth_key: [u8; Aes128CmSha1_80::HMAC_KEY_LEN],
        salt: [u8; Aes128CmSha1_80::SALT_LEN],
        hmac: &'static dyn Sha1HmacProvider,
    },
    AeadAes128Gcm {
        cipher: Box<dyn AeadAes128GcmCipher>,
        salt: [u8; AeadAes128Gcm::SALT_LEN],
    },
    AeadAes256Gcm {
        cipher: Box<dyn AeadAes256GcmCipher>,
        salt: [u8; AeadAes256Gcm::SALT_LEN],
    },
}

/// What the engine needs of one accepted packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The packet index: the sequence number extended by the rollover
    /// counter (RFC 3711 §3.3.1), i.e. the extended sequence number.
    pub index: u64,
    /// Where the payload starts in the clear packet.
    pub payload_start: usize,
}

/// Receive state of one SSRC.
#[derive(Debug, Clone, Copy)]
struct Stream {
    ssrc: u32,
    /// The highest index accepted.
    highest: u64,
    /// Bit `i` set: index `highest - i` was accepted.
    seen: u128,
}

/// Decrypts and authenticates one session's incoming SRTP for the SSRCs it
/// was told about ([`Self::add_stream`]).
pub struct SrtpReceiver {
    cipher: Cipher,
    /// Few (one per received m-line): a vector beats a map.
    streams: Vec<Stream>,
}

impl fmt::Debug for SrtpReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpReceiver")
            .field("streams", &self.streams)
            .finish_non_exhaustive()
    }
}

/// RFC 3711 §4.3.1/§4.3.3: the AES-CM PRF keyed with the master key, over
/// the master salt XOR the label at byte 7 (`key_id = label || r`, with
/// r = 0 as no key derivation rate is signalled), then a 16-bit counter.
/// RFC 7714 §11 uses the same with the 96-bit AES-GCM master salt.
fn derive(
    srtp: &dyn SrtpProvider,
    master_key: &[u8],
    master_salt: &[u8],
    label: u8,
    out: &mut [u8],
) {
    let mut input = [0u8; 16];
    input[..master_salt.len()].copy_from_slice(master_salt);
    input[7] ^= label;
    // The provider's ECB round writes a padded block after the one we use.
    let mut block = [0u8; 32];
    for (round, chunk) in out.chunks_mut(16).enumerate() {
        input[14..].copy_from_slice(&(round as u16).to_be_bytes());
        if master_key.len() == 32 {
            srtp.srtp_aes_256_ecb_round(master_key, &input, &mut block);
        } else {
            srtp.srtp_aes_128_ecb_round(master_key, &input, &mut block);
        }
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
}

/// The remote end's master key and salt in RFC 5764 §4.2's layout:
/// `client_key | server_key | client_salt | server_salt`.
fn remote_master(keying: &SrtpKeying, key_len: usize, salt_len: usize) -> Option<(&[u8], &[u8])> {
    let m = &keying.material;
    if m.len() != 2 * (key_len + salt_len) {
        return None;
    }
    // The remote writes with the client's keys when we are the server.
    let (key_at, salt_at) = if keying.active {
        (key_len, 2 * key_len + salt_len)
    } else {
        (0, 2 * key_len)
    };
    Some((
        &m[key_at..key_at + key_len],
        &m[salt_at..salt_at + salt_len],
    ))
}

impl SrtpReceiver {
    /// The receive keys for the remote end's packets, from the keying the
    /// DTLS handshake exported. `None` for a profile str0m cannot key
    /// either, or material of the wrong length.
    pub fn new(crypto: &CryptoProvider, keying: &SrtpKeying) -> Option<Self> {
        let srtp = crypto.srtp_provider;
        let cipher = match keying.profile {
            SrtpProfile::AES128_CM_SHA1_80 => {
                let (key, salt) =
                    remote_master(keying, Aes128CmSha1_80::KEY_LEN, Aes128CmSha1_80::SALT_LEN)?;
                Self::aes_cm(srtp, crypto.sha1_hmac_provider, key, salt)
            }
            SrtpProfile::AEAD_AES_128_GCM => {
                let (key, salt) =
                    remote_master(keying, AeadAes128Gcm::KEY_LEN, AeadAes128Gcm::SALT_LEN)?;
                Self::gcm_128(srtp, key, salt)
            }
            SrtpProfile::AEAD_AES_256_GCM => {
                let (key, salt) =
                    remote_master(keying, AeadAes256Gcm::KEY_LEN, AeadAes256Gcm::SALT_LEN)?;
                Self::gcm_256(srtp, key, salt)
            }
            _ => return None,
        };
        Some(Self {
            cipher,
            streams: Vec::new(),
        })
    }

    fn aes_cm(
        srtp: &dyn SrtpProvider,
        hmac: &'static dyn Sha1HmacProvider,
        key: &[u8],
        salt: &[u8],
    ) -> Cipher {
        let mut session_key = [0u8; Aes128CmSha1_80::KEY_LEN];
        let mut auth_key = [0u8; Aes128CmSha1_80::HMAC_KEY_LEN];
        let mut session_salt = [0u8; Aes128CmSha1_80::SALT_LEN];
        derive(srtp, key, salt, LABEL_RTP_ENCRYPTION, &mut session_key);
        derive(srtp, key, salt, LABEL_RTP_AUTHENTICATION, &mut auth_key);
        derive(srtp, key, salt, LABEL_RTP_SALT, &mut session_salt);
        Cipher::Aes128CmSha1_80 {
            cipher: srtp.aes_128_cm_sha1_80().create_cipher(session_key, false),
            auth_key,
            salt: session_salt,
            hmac,
        }
    }

    fn gcm_128(srtp: &dyn SrtpProvider, key: &[u8], salt: &[u8]) -> Cipher {
        let mut session_key = [0u8; AeadAes128Gcm::KEY_LEN];
        let mut session_salt = [0u8; AeadAes128Gcm::SALT_LEN];
        derive(srtp, key, salt, LABEL_RTP_ENCRYPTION, &mut session_key);
        derive(srtp, key, salt, LABEL_RTP_SALT, &mut session_salt);
        Cipher::AeadAes128Gcm {
            cipher: srtp.aead_aes_128_gcm().create_cipher(session_key, false),
            salt: session_salt,
        }
    }

    fn gcm_256(srtp: &dyn SrtpProvider, key: &[u8], salt: &[u8]) -> Cipher {
        let mut session_key = [0u8; AeadAes256Gcm::KEY_LEN];
        let mut session_salt = [0u8; AeadAes256Gcm::SALT_LEN];
        derive(srtp, key, salt, LABEL_RTP_ENCRYPTION, &mut session_key);
        derive(srtp, key, salt, LABEL_RTP_SALT, &mut session_salt);
        Cipher::AeadAes256Gcm {
            cipher: srtp.aead_aes_256_gcm().create_cipher(session_key, false),
            salt: session_salt,
        }
    }

    /// Starts receiving `ssrc` here, where another receiver left it: the
    /// highest index it accepted. Only packets above `highest` are accepted
    /// at first, so none the other receiver took is taken twice.
    pub fn add_stream(&mut self, ssrc: u32, highest: u64) {
        self.streams.retain(|s| s.ssrc != ssrc);
        self.streams.push(Stream {
            ssrc,
            highest,
            // Everything at or below `highest` counts as seen.
            seen: u128::MAX,
        });
    }

    /// Stops receiving `ssrc` here.
    pub fn remove_stream(&mut self, ssrc: u32) {
        self.streams.retain(|s| s.ssrc != ssrc);
    }

    /// Whether `ssrc`'s packets are received here.
    pub fn has_stream(&self, ssrc: u32) -> bool {
        self.streams.iter().any(|s| s.ssrc == ssrc)
    }

    /// The SSRC of an RTP packet (not RTCP: RFC 5761 §4) whose SSRC is
    /// received here.
    pub fn claims(&self, packet: &[u8]) -> Option<u32> {
        if packet.len() < 12 || packet[0] >> 6 != 2 || (192..=223).contains(&packet[1]) {
            return None;
        }
        let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        self.has_stream(ssrc).then_some(ssrc)
    }

    /// Authenticates and decrypts `packet`, an SRTP packet of a stream
    /// received here, into `plain`: the packet in the clear, header and
    /// payload, padding removed and the P bit cleared. (`plain` is the
    /// caller's so that one buffer serves every session.)
    pub fn unprotect(&mut self, packet: &[u8], plain: &mut Vec<u8>) -> Result<Accepted, SrtpError> {
        let header_len = header_len(packet).ok_or(SrtpError::Malformed)?;
        let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
        let seq = u16::from_be_bytes([packet[2], packet[3]]);
        let at = self
            .streams
            .iter()
            .position(|s| s.ssrc == ssrc)
            .ok_or(SrtpError::Malformed)?;
        let stream = self.streams[at];
        let index = estimate_index(stream.highest, seq).ok_or(SrtpError::Replay)?;
        if !stream.accepts(index) {
            return Err(SrtpError::Replay);
        }
        let roc = (index >> 16) as u32;
        plain.clear();
        plain.extend_from_slice(&packet[..header_len]);
        match &mut self.cipher {
            Cipher::Aes128CmSha1_80 {
                cipher,
                auth_key,
                salt,
                hmac,
            } => {
                let tag_at = packet
                    .len()
                    .checked_sub(Aes128CmSha1_80::HMAC_TAG_LEN)
                    .filter(|&t| t >= header_len)
                    .ok_or(SrtpError::Malformed)?;
                let (authenticated, tag) = packet.split_at(tag_at);
                let sha1 = |k: &[u8], parts: &[&[u8]]| hmac.sha1_hmac(k, parts);
                if !Aes128CmSha1_80::rtp_verify(sha1, auth_key, authenticated, index, tag) {
                    return Err(SrtpError::Auth);
                }
                let iv = Aes128CmSha1_80::rtp_iv(*salt, ssrc, index);
                let encrypted = &authenticated[header_len..];
                // aws-lc-rs's CTR mode wants room for one more block less a byte.
                plain.resize(header_len + encrypted.len() + 15, 0);
                cipher
                    .decrypt(&iv, encrypted, &mut plain[header_len..])
                    .map_err(|_| SrtpError::Auth)?;
                plain.truncate(header_len + encrypted.len());
            }
            Cipher::AeadAes128Gcm { cipher, salt } => open_gcm(
                packet,
                header_len,
                plain,
                &AeadAes128Gcm::rtp_iv(*salt, ssrc, roc, seq),
                AeadAes128Gcm::TAG_LEN,
                |iv, aad, sealed, out| cipher.decrypt(iv, aad, sealed, out),
            )?,
            Cipher::AeadAes256Gcm { cipher, salt } => open_gcm(
                packet,
                header_len,
                plain,
                &AeadAes256Gcm::rtp_iv(*salt, ssrc, roc, seq),
                AeadAes256Gcm::TAG_LEN,
                |iv, aad, sealed, out| cipher.decrypt(iv, aad, sealed, out),
            )?,
        }
        // Authentic: only now does the stream's state move.
        self.streams[at].accept(index);
        strip_padding(plain, header_len)?;
        Ok(Accepted {
            index,
            payload_start: header_len,
        })
    }
}

impl Stream {
    /// Whether `index` is new: above the highest, or within the window
    /// and not yet seen.
    fn accepts(&self, index: u64) -> bool {
        if index > self.highest {
            return true;
        }
        let behind = self.highest - index;
        behind < REPLAY_WINDOW && self.seen & (1u128 << behind) == 0
    }

    fn accept(&mut self, index: u64) {
        if index > self.highest {
            let ahead = index - self.highest;
            self.seen = if ahead >= REPLAY_WINDOW {
                1
            } else {
                (self.seen << ahead) | 1
            };
            self.highest = index;
        } else {
            self.seen |= 1u128 << (self.highest - index);
        }
    }
}

/// RFC 7714 §9.2: authenticates `packet`'s header (the AAD) and its
/// sealed payload with the `tag_len`-byte tag at its end, and appends the
/// payload in the clear to `plain` (which holds the header). Both AES-GCM
/// profiles: their ciphers are different types with one `decrypt`.
fn open_gcm(
    packet: &[u8],
    header_len: usize,
    plain: &mut Vec<u8>,
    iv: &[u8; 12],
    tag_len: usize,
    decrypt: impl FnOnce(&[u8; 12], &[&[u8]], &[u8], &mut [u8]) -> Result<usize, CryptoError>,
) -> Result<(), SrtpError> {
    let sealed = &packet[header_len..];
    let len = sealed
        .len()
        .checked_sub(tag_len)
        .ok_or(SrtpError::Malformed)?;
    plain.resize(header_len + len, 0);
    decrypt(
        iv,
        &[&packet[..header_len]],
        sealed,
        &mut plain[header_len..],
    )
    .map_err(|_| SrtpError::Auth)?;
    Ok(())
}

/// Removes the padding of a clear RTP packet whose header is `header_len`
/// bytes (RFC 3550 §5.1: with P set, the last byte counts the padding
/// bytes, itself included) and clears P, so what is left reads as a packet
/// without padding.
pub(crate) fn strip_padding(plain: &mut Vec<u8>, header_len: usize) -> Result<(), SrtpError> {
    if plain.first().is_none_or(|b| b & 0x20 == 0) {
        return Ok(());
    }
    let pad = usize::from(*plain.last().ok_or(SrtpError::Malformed)?);
    let payload = plain.len().saturating_sub(header_len);
    if pad == 0 || pad > payload {
        return Err(SrtpError::Malformed);
    }
    plain.truncate(plain.len() - pad);
    plain[0] &= !0x20;
    Ok(())
}

/// RFC 3711 Appendix A: the index of sequence number `seq`, from the
/// highest index accepted so far (`s_l` and the rollover counter in one).
/// `None` for a packet from before index 0.
fn estimate_index(highest: u64, seq: u16) -> Option<u64> {
    let roc = highest >> 16;
    let s_l = highest & 0xffff;
    let seq = u64::from(seq);
    let v = if s_l < 0x8000 {
        if seq > s_l && seq - s_l > 0x8000 {
            roc.checked_sub(1)?
        } else {
            roc
        }
    } else if s_l - 0x8000 > seq {
        roc + 1
    } else {
        roc
    };
    Some((v << 16) | seq)
}

/// The length of an RTP header: fixed part, CSRCs, extension (RFC 3550
/// §5.1, §5.3.1). `None` when `packet` is not RTP version 2 or is shorter.
pub(crate) fn header_len(packet: &[u8]) -> Option<usize> {
    if packet.len() < 12 || packet[0] >> 6 != 2 {
        return None;
    }
    let mut len = 12 + 4 * usize::from(packet[0] & 0x0f);
    if packet[0] & 0x10 != 0 {
        let words = packet.get(len + 2..len + 4)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    (len <= packet.len()).then_some(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Keying material laid out as RFC 5764 §4.2 has it, with the client's
    /// master key and salt the given ones, the server's all 0xEE.
    fn client_keying(profile: SrtpProfile, key: &[u8], salt: &[u8]) -> SrtpKeying {
        let mut material = Vec::new();
        material.extend_from_slice(key);
        material.extend(std::iter::repeat_n(0xEE, key.len()));
        material.extend_from_slice(salt);
        material.extend(std::iter::repeat_n(0xEE, salt.len()));
        SrtpKeying {
            profile,
            material,
            // We are the DTLS server: the remote sends with the client's.
            active: false,
        }
    }

    fn crypto() -> CryptoProvider {
        str0m::crypto::from_feature_flags()
    }

    // libSRTP's `srtp_validate` (test/srtp_driver.c): the default policy
    // (AES_CM_128_HMAC_SHA1_80), SSRC 0xcafebabe, sequence number 0x1234,
    // rollover counter 0, sixteen bytes of 0xab.
    const LIBSRTP_KEY: &str = "e1f97a0d3e018be0d64fa32c06de4139";
    const LIBSRTP_SALT: &str = "0ec675ad498afeebb6960b3aabe6";
    const LIBSRTP_CIPHERTEXT: &str =
        "800f1234 decafbad cafebabe 4e55dc4c e79978d8 8ca4d215 949d2402 b78d6acc 99ea179b 8dbb";
    const LIBSRTP_PLAINTEXT: &str =
        "800f1234 decafbad cafebabe abababab abababab abababab abababab";
    // libSRTP's `srtp_validate_gcm`: AEAD_AES_128_GCM, same packet.
    const LIBSRTP_GCM_KEY: &str = "000102030405060708090a0b0c0d0e0f";
    const LIBSRTP_GCM_SALT: &str = "a0a1a2a3a4a5a6a7a8a9aaab";
    const LIBSRTP_GCM_CIPHERTEXT: &str = "800f1234 decafbad cafebabe c5002ede 04cfdd2e b91159e0 880aa06e d2976826 f796b201 df3131a1 27e8a392";

    fn libsrtp_cm() -> SrtpReceiver {
        let keying = client_keying(
            SrtpProfile::AES128_CM_SHA1_80,
            &hex(LIBSRTP_KEY),
            &hex(LIBSRTP_SALT),
        );
        let mut rx = SrtpReceiver::new(&crypto(), &keying).unwrap();
        // As if the packet before 0x1234 had been the last one received.
        rx.add_stream(0xcafe_babe, 0x1233);
        rx
    }

    #[test]
    fn rfc3711_key_derivation() {
        // RFC 3711 Appendix B.3.
        let crypto = crypto();
        let key = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
        let salt = hex("0EC675AD498AFEEBB6960B3AABE6");
        let mut cipher_key = [0u8; 16];
        let mut cipher_salt = [0u8; 14];
        let mut auth_key = [0u8; 20];
        derive(crypto.srtp_provider, &key, &salt, 0, &mut cipher_key);
        derive(crypto.srtp_provider, &key, &salt, 2, &mut cipher_salt);
        derive(crypto.srtp_provider, &key, &salt, 1, &mut auth_key);
        assert_eq!(cipher_key.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
        assert_eq!(cipher_salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
        assert_eq!(
            auth_key.to_vec(),
            hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
        );
    }

    #[test]
    fn libsrtp_aes_cm_packet_decrypts() {
        let mut rx = libsrtp_cm();
        let mut plain = Vec::new();
        let accepted = rx.unprotect(&hex(LIBSRTP_CIPHERTEXT), &mut plain).unwrap();
        assert_eq!(plain, hex(LIBSRTP_PLAINTEXT));
        assert_eq!(accepted.index, 0x1234);
        assert_eq!(accepted.payload_start, 12);
    }

    #[test]
    fn libsrtp_aes_gcm_packet_decrypts() {
        let keying = client_keying(
            SrtpProfile::AEAD_AES_128_GCM,
            &hex(LIBSRTP_GCM_KEY),
            &hex(LIBSRTP_GCM_SALT),
        );
        let mut rx = SrtpReceiver::new(&crypto(), &keying).unwrap();
        rx.add_stream(0xcafe_babe, 0x1233);
        let mut plain = Vec::new();
        rx.unprotect(&hex(LIBSRTP_GCM_CIPHERTEXT), &mut plain)
            .unwrap();
        assert_eq!(plain, hex(LIBSRTP_PLAINTEXT));
    }

    #[test]
    fn the_servers_keys_are_the_wrong_ones_when_we_are_the_server() {
        // Swap the halves: the remote's keys are then the server's.
        let mut keying = client_keying(
            SrtpProfile::AES128_CM_SHA1_80,
            &hex(LIBSRTP_KEY),
            &hex(LIBSRTP_SALT),
        );
        keying.active = true;
        let mut rx = SrtpReceiver::new(&crypto(), &keying).unwrap();
        rx.add_stream(0xcafe_babe, 0x1233);
        assert_eq!(
            rx.unprotect(&hex(LIBSRTP_CIPHERTEXT), &mut Vec::new()),
            Err(SrtpError::Auth)
        );
    }

    #[test]
    fn a_flipped_bit_fails_authentication_and_moves_nothing() {
        let mut rx = libsrtp_cm();
        let mut forged = hex(LIBSRTP_CIPHERTEXT);
        forged[14] ^= 1;
        assert_eq!(rx.unprotect(&forged, &mut Vec::new()), Err(SrtpError::Auth));
        // The genuine packet with the same index is still accepted.
        rx.unprotect(&hex(LIBSRTP_CIPHERTEXT), &mut Vec::new())
            .unwrap();
    }

    #[test]
    fn a_replayed_packet_is_refused() {
        let mut rx = libsrtp_cm();
        rx.unprotect(&hex(LIBSRTP_CIPHERTEXT), &mut Vec::new())
            .unwrap();
        assert_eq!(
            rx.unprotect(&hex(LIBSRTP_CIPHERTEXT), &mut Vec::new()),
            Err(SrtpError::Replay)
        );
    }

    #[test]
    fn packets_up_to_the_handover_are_refused() {
        let mut rx = libsrtp_cm();
        rx.add_stream(0xcafe_babe, 0x1234);
        assert_eq!(
            rx.unprotect(&hex(LIBSRTP_CIPHERTEXT), &mut Vec::new()),
            Err(SrtpError::Replay)
        );
    }

    #[test]
    fn truncated_and_foreign_packets_are_malformed() {
        let mut rx = libsrtp_cm();
        let packet = hex(LIBSRTP_CIPHERTEXT);
        assert_eq!(
            rx.unprotect(&packet[..20], &mut Vec::new()),
            Err(SrtpError::Malformed)
        );
        assert_eq!(
            rx.unprotect(&packet[..11], &mut Vec::new()),
            Err(SrtpError::Malformed)
        );
        let mut other_ssrc = packet.clone();
        other_ssrc[11] ^= 1;
        assert_eq!(rx.claims(&other_ssrc), None);
        assert_eq!(
            rx.unprotect(&other_ssrc, &mut Vec::new()),
            Err(SrtpError::Malformed)
        );
        assert_eq!(rx.claims(&packet), Some(0xcafe_babe));
        // RTCP (a sender report) is never claimed.
        let mut rtcp = packet.clone();
        rtcp[1] = 200;
        assert_eq!(rx.claims(&rtcp), None);
    }

    #[test]
    fn index_estimation_follows_rfc3711_appendix_a() {
        // In step.
        assert_eq!(estimate_index(100, 101), Some(101));
        // Across a wrap: s_l high, seq small: next rollover.
        assert_eq!(estimate_index(0xfff0, 0x0005), Some(0x1_0005));
        // Reordered from before a wrap: s_l small, seq high: last rollover.
        assert_eq!(estimate_index(0x1_0005, 0xfff0), Some(0xfff0));
        // The same before any rollover: before index 0.
        assert_eq!(estimate_index(0x0005, 0xfff0), None);
    }

    #[test]
    fn the_window_takes_late_packets_once() {
        let mut s = Stream {
            ssrc: 1,
            highest: 1000,
            seen: 1,
        };
        assert!(s.accepts(999));
        s.accept(999);
        assert!(!s.accepts(999));
        assert!(s.accepts(1000 - 127));
        assert!(!s.accepts(1000 - 128), "outside the window");
        s.accept(1200);
        assert!(!s.accepts(1000), "now outside the window");
        assert!(s.accepts(1199));
    }

    #[test]
    fn padding_is_removed_and_p_cleared() {
        // RFC 3550 §5.1: P set, two payload bytes, then three of padding
        // whose last says three.
        let mut p = vec![0xA0, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xF8, 0xFF, 0, 0, 3];
        strip_padding(&mut p, 12).unwrap();
        assert_eq!(p, [0x80, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xF8, 0xFF]);
        // Without P nothing is removed.
        let mut q = p.clone();
        strip_padding(&mut q, 12).unwrap();
        assert_eq!(q, p);
        // A count of zero, or more than the payload, is malformed.
        let mut zero = vec![0xA0, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xF8, 0];
        assert_eq!(strip_padding(&mut zero, 12), Err(SrtpError::Malformed));
        let mut long = vec![0xA0, 111, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xF8, 3];
        assert_eq!(strip_padding(&mut long, 12), Err(SrtpError::Malformed));
    }

    proptest::proptest! {
        #[test]
        fn without_the_keys_nothing_is_accepted(
            profile in 0u8..3,
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120),
        ) {
            let profile = [
                SrtpProfile::AES128_CM_SHA1_80,
                SrtpProfile::AEAD_AES_128_GCM,
                SrtpProfile::AEAD_AES_256_GCM,
            ][usize::from(profile)];
            let keying = SrtpKeying {
                profile,
                material: vec![0x5a; profile.keying_material_len()],
                active: false,
            };
            let mut rx = SrtpReceiver::new(&crypto(), &keying).unwrap();
            rx.add_stream(0xcafe_babe, 1000);
            // RTP version 2, the stream's SSRC, anything else.
            let mut packet = vec![0x80, 111, 0x03, 0xE9, 0, 0, 0, 0, 0xca, 0xfe, 0xba, 0xbe];
            packet.extend_from_slice(&body);
            proptest::prop_assert!(rx.unprotect(&packet, &mut Vec::new()).is_err());
        }

        #[test]
        fn any_change_to_a_genuine_packet_is_refused(at in 0usize..38, flip in 1u8..=255) {
            let mut packet = hex(LIBSRTP_CIPHERTEXT);
            packet[at] ^= flip;
            proptest::prop_assert!(libsrtp_cm().unprotect(&packet, &mut Vec::new()).is_err());
        }
    }

    #[test]
    fn header_lengths() {
        let mut p = hex(LIBSRTP_PLAINTEXT);
        assert_eq!(header_len(&p), Some(12));
        // Two CSRCs.
        p[0] = 0x82;
        assert_eq!(header_len(&p), Some(20));
        // An extension of one word after the fixed header.
        p[0] = 0x90;
        p[12..16].copy_from_slice(&[0xbe, 0xde, 0x00, 0x01]);
        assert_eq!(header_len(&p), Some(20));
        // An extension longer than the packet.
        p[14..16].copy_from_slice(&[0x00, 0x09]);
        assert_eq!(header_len(&p), None);
        // Version 1.
        p[0] = 0x40;
        assert_eq!(header_len(&p), None);
    }
}
