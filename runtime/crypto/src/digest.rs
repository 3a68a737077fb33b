//! `crypto.subtle.digest` and the streaming state behind `crypto.DigestStream`, on RustCrypto's
//! sha1, sha2 and md-5. Also the `with_hash!` dispatch every hash-parameterised algorithm
//! (HMAC, HKDF, PBKDF2, RSA) uses to turn a runtime [`HashAlgorithm`] into a hash type.

use sha2::Digest;

use crate::algorithm::HashAlgorithm;

/// Runs `$body` with `$hash_type` bound to the RustCrypto type of `$hash`.
macro_rules! with_hash {
    ($hash:expr, $hash_type:ident => $body:expr) => {
        match $hash {
            $crate::algorithm::HashAlgorithm::Sha1 => {
                type $hash_type = ::sha1::Sha1;
                $body
            }
            $crate::algorithm::HashAlgorithm::Sha256 => {
                type $hash_type = ::sha2::Sha256;
                $body
            }
            $crate::algorithm::HashAlgorithm::Sha384 => {
                type $hash_type = ::sha2::Sha384;
                $body
            }
            $crate::algorithm::HashAlgorithm::Sha512 => {
                type $hash_type = ::sha2::Sha512;
                $body
            }
            $crate::algorithm::HashAlgorithm::Md5 => {
                type $hash_type = ::md5::Md5;
                $body
            }
        }
    };
}
pub(crate) use with_hash;

/// `crypto.subtle.digest(hash, data)`.
pub fn digest(hash: HashAlgorithm, data: &[u8]) -> Vec<u8> {
    with_hash!(hash, Hash => Hash::digest(data).to_vec())
}

/// The running state of one `crypto.DigestStream`: feed it the chunks written to the stream, then
/// `finish` when the stream closes.
#[derive(Clone)]
pub struct DigestStream {
    state: DigestState,
}

#[derive(Clone)]
enum DigestState {
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
    Md5(md5::Md5),
}

impl DigestStream {
    pub fn new(hash: HashAlgorithm) -> DigestStream {
        let state = match hash {
            HashAlgorithm::Sha1 => DigestState::Sha1(sha1::Sha1::new()),
            HashAlgorithm::Sha256 => DigestState::Sha256(sha2::Sha256::new()),
            HashAlgorithm::Sha384 => DigestState::Sha384(sha2::Sha384::new()),
            HashAlgorithm::Sha512 => DigestState::Sha512(sha2::Sha512::new()),
            HashAlgorithm::Md5 => DigestState::Md5(md5::Md5::new()),
        };
        DigestStream { state }
    }

    pub fn algorithm(&self) -> HashAlgorithm {
        match self.state {
            DigestState::Sha1(_) => HashAlgorithm::Sha1,
            DigestState::Sha256(_) => HashAlgorithm::Sha256,
            DigestState::Sha384(_) => HashAlgorithm::Sha384,
            DigestState::Sha512(_) => HashAlgorithm::Sha512,
            DigestState::Md5(_) => HashAlgorithm::Md5,
        }
    }

    /// Hashes one chunk.
    pub fn update(&mut self, chunk: &[u8]) {
        match &mut self.state {
            DigestState::Sha1(hasher) => hasher.update(chunk),
            DigestState::Sha256(hasher) => hasher.update(chunk),
            DigestState::Sha384(hasher) => hasher.update(chunk),
            DigestState::Sha512(hasher) => hasher.update(chunk),
            DigestState::Md5(hasher) => hasher.update(chunk),
        }
    }

    /// The digest of everything written.
    pub fn finish(self) -> Vec<u8> {
        match self.state {
            DigestState::Sha1(hasher) => hasher.finalize().to_vec(),
            DigestState::Sha256(hasher) => hasher.finalize().to_vec(),
            DigestState::Sha384(hasher) => hasher.finalize().to_vec(),
            DigestState::Sha512(hasher) => hasher.finalize().to_vec(),
            DigestState::Md5(hasher) => hasher.finalize().to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_vectors::hex;

    // FIPS 180-2 Appendix B/C/D ("abc") and RFC 1321 section A.5 ("abc") known answers.
    const ABC: [(HashAlgorithm, &str); 5] = [
        (HashAlgorithm::Sha1, "a9993e364706816aba3e25717850c26c9cd0d89d"),
        (HashAlgorithm::Sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        (
            HashAlgorithm::Sha384,
            "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7",
        ),
        (
            HashAlgorithm::Sha512,
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        ),
        (HashAlgorithm::Md5, "900150983cd24fb0d6963f7d28e17f72"),
    ];

    #[test]
    fn digests_match_the_standards_known_answers() {
        for (hash, expected) in ABC {
            assert_eq!(digest(hash, b"abc"), hex(expected), "{}", hash.as_str());
            assert_eq!(digest(hash, b"abc").len(), hash.output_bytes());
        }
        // RFC 1321 A.5: MD5("") and FIPS 180-2: SHA-256("").
        assert_eq!(digest(HashAlgorithm::Md5, b""), hex("d41d8cd98f00b204e9800998ecf8427e"));
        assert_eq!(
            digest(HashAlgorithm::Sha256, b""),
            hex("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
    }

    #[test]
    fn a_stream_fed_in_chunks_equals_the_one_shot_digest() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        for (hash, _) in ABC {
            let mut stream = DigestStream::new(hash);
            for chunk in data.chunks(33) {
                stream.update(chunk);
            }
            stream.update(b"");
            assert_eq!(stream.algorithm(), hash);
            assert_eq!(stream.finish(), digest(hash, &data));
        }
    }
}
