//! AES-CTR, AES-CBC, AES-GCM and AES-KW keys: generation, raw/jwk import and export, and their
//! operations, on RustCrypto's aes, ctr, cbc, aes-gcm and aes-kw crates.
//!
//! Two places compose the crates rather than call one function, and say why where they do:
//! AES-CTR's counter wrap-around (the `length` parameter) and AES-GCM's choice of nonce and tag
//! sizes, which the aes-gcm crate fixes at compile time.

use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{Block, BlockCipherEncrypt, BlockModeDecrypt, BlockModeEncrypt, KeyInit, KeyIvInit, StreamCipher};
use aes::{Aes128, Aes192, Aes256};
use aes_gcm::AesGcm;
use aes_gcm::aead::consts::{U4, U8, U12, U13, U14, U15, U16};
use aes_gcm::aead::{Aead, AeadInOut, Nonce, Payload};
use rand_core::TryCryptoRng;
use zeroize::Zeroizing;

use crate::algorithm::{AlgorithmName, EncryptParams, KeyFormat};
use crate::error::{CryptoError, data, not_supported, operation, random_source_failed};
use crate::jwk::{JsonWebKey, decode_member, encode_member};
use crate::key::{CryptoKey, ExportedKey, KeyAlgorithm, KeyData, KeyMaterial, KeyType};
use crate::usage::{KeyUsage, KeyUsages};

/// The usages an AES key may carry: AES-KW only wraps; the others also encrypt.
fn allowed_usages(algorithm: AlgorithmName) -> KeyUsages {
    if algorithm == AlgorithmName::AesKw {
        KeyUsages::of(&[KeyUsage::WrapKey, KeyUsage::UnwrapKey])
    } else {
        KeyUsages::of(&[KeyUsage::Encrypt, KeyUsage::Decrypt, KeyUsage::WrapKey, KeyUsage::UnwrapKey])
    }
}

/// The mode suffix of the JWK `alg` ("GCM" in "A256GCM").
fn jwk_mode(algorithm: AlgorithmName) -> &'static str {
    match algorithm {
        AlgorithmName::AesCtr => "CTR",
        AlgorithmName::AesCbc => "CBC",
        AlgorithmName::AesGcm => "GCM",
        _ => "KW",
    }
}

fn make_key(algorithm: AlgorithmName, bytes: Zeroizing<Vec<u8>>, extractable: bool, usages: KeyUsages) -> CryptoKey {
    let length = (bytes.len() * 8) as u32;
    CryptoKey::new(
        KeyType::Secret,
        extractable,
        KeyAlgorithm::Aes { algorithm, length },
        usages,
        KeyMaterial::Secret(bytes),
    )
}

pub(crate) fn generate<R: TryCryptoRng + ?Sized>(
    algorithm: AlgorithmName,
    length: u32,
    extractable: bool,
    usages: KeyUsages,
    rng: &mut R,
) -> Result<CryptoKey, CryptoError> {
    let usages = usages.require_within(allowed_usages(algorithm), algorithm.as_str())?;
    if !matches!(length, 128 | 192 | 256) {
        return Err(operation(format!(
            "Generated AES key length must be 128, 192, or 256 bits but requested {length}."
        )));
    }
    let mut bytes = Zeroizing::new(vec![0u8; (length / 8) as usize]);
    rng.try_fill_bytes(&mut bytes).map_err(|_| random_source_failed())?;
    Ok(make_key(algorithm, bytes, extractable, usages))
}

pub(crate) fn import(
    algorithm: AlgorithmName,
    format: KeyFormat,
    key_data: KeyData<'_>,
    extractable: bool,
    usages: KeyUsages,
) -> Result<CryptoKey, CryptoError> {
    let usages = usages.require_within(allowed_usages(algorithm), algorithm.as_str())?;
    let bytes = match (format, key_data) {
        (KeyFormat::Raw, KeyData::Bytes(bytes)) => Zeroizing::new(bytes.to_vec()),
        (KeyFormat::Jwk, KeyData::Jwk(jwk)) => {
            jwk.require_kty("oct", algorithm.as_str())?;
            decode_member(jwk.k.as_deref(), "k")?
        }
        (KeyFormat::Raw | KeyFormat::Jwk, _) => {
            return Err(crate::error::type_error("The key data does not match the import format."));
        }
        (KeyFormat::Pkcs8 | KeyFormat::Spki, _) => {
            return Err(not_supported(format!(
                "{} keys can only be imported in \"raw\" or \"jwk\" format.",
                algorithm.as_str()
            )));
        }
    };
    if !matches!(bytes.len(), 16 | 24 | 32) {
        return Err(data(format!(
            "Imported AES key length must be 128, 192, or 256 bits but provided {}.",
            bytes.len() * 8
        )));
    }
    if let KeyData::Jwk(jwk) = key_data {
        let expected_alg = format!("A{}{}", bytes.len() * 8, jwk_mode(algorithm));
        if let Some(alg) = &jwk.alg
            && *alg != expected_alg
        {
            return Err(data(format!("The JSON Web Key's \"alg\" is \"{alg}\" but \"{expected_alg}\" is required.")));
        }
        jwk.check_use("enc", usages)?;
        jwk.check_ext_and_key_ops(extractable, usages)?;
    }
    Ok(make_key(algorithm, bytes, extractable, usages))
}

pub(crate) fn export(key: &CryptoKey, format: KeyFormat) -> Result<ExportedKey, CryptoError> {
    let bytes = key.secret_bytes()?;
    match format {
        KeyFormat::Raw => Ok(ExportedKey::Bytes(bytes.to_vec())),
        KeyFormat::Jwk => {
            let jwk = JsonWebKey {
                kty: Some("oct".into()),
                k: Some(encode_member(bytes)),
                alg: Some(format!("A{}{}", bytes.len() * 8, jwk_mode(key.algorithm.algorithm()))),
                ..JsonWebKey::default()
            };
            Ok(ExportedKey::Jwk(jwk.with_usages(key.usages)))
        }
        KeyFormat::Pkcs8 | KeyFormat::Spki => Err(not_supported(format!(
            "{} keys can only be exported in \"raw\" or \"jwk\" format.",
            key.algorithm.name()
        ))),
    }
}

/// Encrypts (`decrypting == false`) or decrypts with AES-CTR, AES-CBC or AES-GCM.
pub(crate) fn encrypt_or_decrypt(
    key: &CryptoKey,
    params: &EncryptParams<'_>,
    input: &[u8],
    decrypting: bool,
) -> Result<Vec<u8>, CryptoError> {
    let key_bytes = key.secret_bytes()?;
    match *params {
        EncryptParams::AesCtr { counter, length } => ctr_apply(key_bytes, counter, length, input),
        EncryptParams::AesCbc { iv } => {
            if iv.len() != 16 {
                return Err(operation(format!("AES-CBC IV must be 16 bytes long (provided {} bytes).", iv.len())));
            }
            if decrypting { cbc_decrypt(key_bytes, iv, input) } else { cbc_encrypt(key_bytes, iv, input) }
        }
        EncryptParams::AesGcm { iv, additional_data, tag_length } => {
            gcm_apply(key_bytes, iv, additional_data.unwrap_or_default(), tag_length, input, decrypting)
        }
        EncryptParams::RsaOaep { .. } | EncryptParams::AesKw => {
            Err(not_supported("This algorithm does not encrypt with an AES key."))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// AES-CBC with PKCS#7 padding.

fn cbc_encrypt(key: &[u8], iv: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    fn run<C: KeyIvInit + BlockModeEncrypt>(key: &[u8], iv: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let cipher = C::new_from_slices(key, iv).map_err(|_| operation("Invalid AES-CBC key or IV."))?;
        Ok(cipher.encrypt_padded_vec::<Pkcs7>(plaintext))
    }
    match key.len() {
        16 => run::<cbc::Encryptor<Aes128>>(key, iv, plaintext),
        24 => run::<cbc::Encryptor<Aes192>>(key, iv, plaintext),
        _ => run::<cbc::Encryptor<Aes256>>(key, iv, plaintext),
    }
}

fn cbc_decrypt(key: &[u8], iv: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    fn run<C: KeyIvInit + BlockModeDecrypt>(key: &[u8], iv: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let cipher = C::new_from_slices(key, iv).map_err(|_| operation("Invalid AES-CBC key or IV."))?;
        cipher.decrypt_padded_vec::<Pkcs7>(ciphertext).map_err(|_| {
            operation(format!(
                "Decryption failed. This could be due to bad padding, an incorrect key, or a ciphertext \
                 whose length ({}) is not a multiple of 16.",
                ciphertext.len()
            ))
        })
    }
    match key.len() {
        16 => run::<cbc::Decryptor<Aes128>>(key, iv, ciphertext),
        24 => run::<cbc::Decryptor<Aes192>>(key, iv, ciphertext),
        _ => run::<cbc::Decryptor<Aes256>>(key, iv, ciphertext),
    }
}

// ---------------------------------------------------------------------------------------------
// AES-CTR.
//
// WebCrypto's counter is the rightmost `length` bits of the 16-byte counter block, and it wraps to
// zero without touching the other bits. The ctr crate's `Ctr128BE` increments all 128 bits, which
// gives the same blocks as long as the low `length` bits do not overflow, so the input is cut into
// segments at each wrap (as Chromium and workerd do). `Ctr128BE` cannot produce the block whose
// value is all ones (it stops one short of 2^128), so that single block, when a segment reaches
// it, is the block cipher applied to the all-ones block directly: CTR's definition for one block.

fn ctr_apply(key: &[u8], counter: &[u8], length: u32, input: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let counter: [u8; 16] = counter
        .try_into()
        .map_err(|_| operation(format!("AES-CTR counter must be 16 bytes long (provided {} bytes).", counter.len())))?;
    if !(1..=128).contains(&length) {
        return Err(operation(format!("Invalid AES-CTR counter length of {length} bits.")));
    }
    let blocks = input.len().div_ceil(16) as u128;
    if length < 128 && blocks > (1u128 << length) {
        return Err(operation("AES-CTR counter values would repeat for an input this long."));
    }
    match key.len() {
        16 => ctr_segments::<Aes128>(key, u128::from_be_bytes(counter), length, input),
        24 => ctr_segments::<Aes192>(key, u128::from_be_bytes(counter), length, input),
        _ => ctr_segments::<Aes256>(key, u128::from_be_bytes(counter), length, input),
    }
}

fn ctr_segments<C>(key: &[u8], counter: u128, length: u32, input: &[u8]) -> Result<Vec<u8>, CryptoError>
where
    C: BlockCipherEncrypt + aes::cipher::BlockSizeUser<BlockSize = U16> + KeyInit,
{
    let mask = if length == 128 { u128::MAX } else { (1u128 << length) - 1 };
    let high = counter & !mask;
    let mut low = counter & mask;
    let mut output = input.to_vec();
    let mut offset = 0usize;
    while offset < output.len() {
        let remaining_blocks = (output.len() - offset).div_ceil(16) as u128;
        // Blocks until the low bits wrap: mask - low + 1, which is 2^128 (more than any input)
        // when the whole block is the counter and it starts at zero.
        let until_wrap = (mask - low).saturating_add(1);
        let segment_blocks = remaining_blocks.min(until_wrap);
        // segment_blocks is at most remaining_blocks, which came from a usize.
        let segment_bytes = usize::try_from(segment_blocks)
            .map_err(|_| operation("AES-CTR input is too long."))?
            .saturating_mul(16)
            .min(output.len() - offset);
        let start = high | low;
        let reaches_all_ones = start.checked_add(segment_blocks - 1) == Some(u128::MAX);
        let segment = &mut output[offset..offset + segment_bytes];
        let (stream_part, last_block) = if reaches_all_ones {
            let split = (segment_blocks as usize - 1) * 16;
            segment.split_at_mut(split)
        } else {
            (segment, &mut [][..])
        };
        let mut cipher = ctr::Ctr128BE::<C>::new_from_slices(key, &start.to_be_bytes())
            .map_err(|_| operation("Invalid AES-CTR key."))?;
        cipher.try_apply_keystream(stream_part).map_err(|_| operation("AES-CTR counter overflow."))?;
        if !last_block.is_empty() {
            let block_cipher = C::new_from_slice(key).map_err(|_| operation("Invalid AES-CTR key."))?;
            let mut keystream = Block::<C>::default();
            keystream.fill(0xff);
            block_cipher.encrypt_block(&mut keystream);
            for (byte, key_byte) in last_block.iter_mut().zip(keystream.iter()) {
                *byte ^= key_byte;
            }
        }
        offset += segment_bytes;
        low = (low.wrapping_add(segment_blocks)) & mask;
    }
    Ok(output)
}

// ---------------------------------------------------------------------------------------------
// AES-GCM.
//
// The aes-gcm crate fixes the nonce and tag sizes as types. isobar instantiates it for 96-bit
// nonces (the size GCM is designed for) and 128-bit nonces (common in code ported from Node), and
// for every tag length WebCrypto allows; other IV lengths are a NotSupportedError (workerd accepts
// any non-empty IV). Encryption always computes the 128-bit tag and truncates it, which is what a
// shorter tag is (NIST SP 800-38D section 7.1, MSB_t).

/// The largest plaintext AES-GCM may encrypt at once: 2^39 - 256 bytes (the spec's bound).
const GCM_PLAINTEXT_BYTES_MAX: u64 = (1 << 39) - 256;

fn gcm_apply(
    key: &[u8],
    iv: &[u8],
    additional_data: &[u8],
    tag_length: Option<u32>,
    input: &[u8],
    decrypting: bool,
) -> Result<Vec<u8>, CryptoError> {
    if iv.is_empty() {
        return Err(operation("AES-GCM IV must not be empty."));
    }
    let tag_length = tag_length.unwrap_or(128);
    if !matches!(tag_length, 32 | 64 | 96 | 104 | 112 | 120 | 128) {
        return Err(operation(format!("Invalid AES-GCM tag length {tag_length}.")));
    }
    let tag_bytes = (tag_length / 8) as usize;
    if !matches!(iv.len(), 12 | 16) {
        return Err(not_supported(format!(
            "AES-GCM IVs of {} bytes are not supported; use 12 (recommended) or 16 bytes.",
            iv.len()
        )));
    }
    if decrypting {
        if input.len() < tag_bytes {
            return Err(operation(format!(
                "Ciphertext length of {} bits must be at least the AES-GCM tag length of {tag_length} bits.",
                input.len() * 8
            )));
        }
        let opened = match key.len() {
            16 => gcm_open_by_iv::<Aes128>(key, iv, additional_data, tag_bytes, input),
            24 => gcm_open_by_iv::<Aes192>(key, iv, additional_data, tag_bytes, input),
            _ => gcm_open_by_iv::<Aes256>(key, iv, additional_data, tag_bytes, input),
        };
        opened.map_err(|_| {
            operation("Decryption failed: the key, IV, additional data or tag does not match the ciphertext.")
        })
    } else {
        if input.len() as u64 > GCM_PLAINTEXT_BYTES_MAX {
            return Err(operation("AES-GCM can encrypt at most 2^39 - 256 bytes at a time."));
        }
        let mut sealed = match (key.len(), iv.len()) {
            (16, 12) => gcm_seal::<AesGcm<Aes128, U12>>(key, iv, additional_data, input),
            (16, _) => gcm_seal::<AesGcm<Aes128, U16>>(key, iv, additional_data, input),
            (24, 12) => gcm_seal::<AesGcm<Aes192, U12>>(key, iv, additional_data, input),
            (24, _) => gcm_seal::<AesGcm<Aes192, U16>>(key, iv, additional_data, input),
            (_, 12) => gcm_seal::<AesGcm<Aes256, U12>>(key, iv, additional_data, input),
            (_, _) => gcm_seal::<AesGcm<Aes256, U16>>(key, iv, additional_data, input),
        }
        .map_err(|_| operation("AES-GCM encryption failed."))?;
        // The sealed message is ciphertext || 16-byte tag; a shorter tag is the tag's prefix.
        sealed.truncate(input.len() + tag_bytes);
        Ok(sealed)
    }
}

fn gcm_seal<C: KeyInit + AeadInOut>(
    key: &[u8],
    iv: &[u8],
    additional_data: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, ()> {
    let cipher = C::new_from_slice(key).map_err(|_| ())?;
    let nonce = <&Nonce<C>>::try_from(iv).map_err(|_| ())?;
    cipher.encrypt(nonce, Payload { msg: plaintext, aad: additional_data }).map_err(|_| ())
}

fn gcm_open_by_iv<A>(
    key: &[u8],
    iv: &[u8],
    additional_data: &[u8],
    tag_bytes: usize,
    sealed: &[u8],
) -> Result<Vec<u8>, ()>
where
    A: aes::cipher::BlockCipherEncrypt + aes::cipher::BlockSizeUser<BlockSize = U16> + KeyInit,
{
    if iv.len() == 12 {
        gcm_open_by_tag::<A, U12>(key, iv, additional_data, tag_bytes, sealed)
    } else {
        gcm_open_by_tag::<A, U16>(key, iv, additional_data, tag_bytes, sealed)
    }
}

fn gcm_open_by_tag<A, N>(
    key: &[u8],
    iv: &[u8],
    additional_data: &[u8],
    tag_bytes: usize,
    sealed: &[u8],
) -> Result<Vec<u8>, ()>
where
    A: aes::cipher::BlockCipherEncrypt + aes::cipher::BlockSizeUser<BlockSize = U16> + KeyInit,
    N: aes::cipher::array::ArraySize,
{
    match tag_bytes {
        4 => gcm_open::<AesGcm<A, N, U4>>(key, iv, additional_data, sealed),
        8 => gcm_open::<AesGcm<A, N, U8>>(key, iv, additional_data, sealed),
        12 => gcm_open::<AesGcm<A, N, U12>>(key, iv, additional_data, sealed),
        13 => gcm_open::<AesGcm<A, N, U13>>(key, iv, additional_data, sealed),
        14 => gcm_open::<AesGcm<A, N, U14>>(key, iv, additional_data, sealed),
        15 => gcm_open::<AesGcm<A, N, U15>>(key, iv, additional_data, sealed),
        _ => gcm_open::<AesGcm<A, N, U16>>(key, iv, additional_data, sealed),
    }
}

fn gcm_open<C: KeyInit + AeadInOut>(
    key: &[u8],
    iv: &[u8],
    additional_data: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, ()> {
    let cipher = C::new_from_slice(key).map_err(|_| ())?;
    let nonce = <&Nonce<C>>::try_from(iv).map_err(|_| ())?;
    cipher.decrypt(nonce, Payload { msg: sealed, aad: additional_data }).map_err(|_| ())
}

// ---------------------------------------------------------------------------------------------
// AES-KW (RFC 3394).

/// Wraps key bytes with an AES-KW key.
pub(crate) fn wrap(key: &CryptoKey, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if !plaintext.len().is_multiple_of(8) || plaintext.len() < 16 {
        return Err(operation(format!(
            "AES-KW can only wrap data of at least 16 bytes in multiples of 8 bytes (provided {} bytes).",
            plaintext.len()
        )));
    }
    let key_bytes = key.secret_bytes()?;
    let mut wrapped = vec![0u8; plaintext.len() + aes_kw::IV_LEN];
    let result = match key_bytes.len() {
        16 => aes_kw::KwAes128::new_from_slice(key_bytes).map(|kw| kw.wrap_key(plaintext, &mut wrapped).map(|_| ())),
        24 => aes_kw::KwAes192::new_from_slice(key_bytes).map(|kw| kw.wrap_key(plaintext, &mut wrapped).map(|_| ())),
        _ => aes_kw::KwAes256::new_from_slice(key_bytes).map(|kw| kw.wrap_key(plaintext, &mut wrapped).map(|_| ())),
    };
    match result {
        Ok(Ok(())) => Ok(wrapped),
        _ => Err(operation("AES-KW key wrapping failed.")),
    }
}

/// Unwraps key bytes with an AES-KW key; a failed integrity check is an `OperationError`.
pub(crate) fn unwrap(key: &CryptoKey, wrapped: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if !wrapped.len().is_multiple_of(8) || wrapped.len() < 24 {
        return Err(operation(format!(
            "AES-KW can only unwrap data of at least 24 bytes in multiples of 8 bytes (provided {} bytes).",
            wrapped.len()
        )));
    }
    let key_bytes = key.secret_bytes()?;
    let mut unwrapped = Zeroizing::new(vec![0u8; wrapped.len() - aes_kw::IV_LEN]);
    let result = match key_bytes.len() {
        16 => aes_kw::KwAes128::new_from_slice(key_bytes).map(|kw| kw.unwrap_key(wrapped, &mut unwrapped).map(|_| ())),
        24 => aes_kw::KwAes192::new_from_slice(key_bytes).map(|kw| kw.unwrap_key(wrapped, &mut unwrapped).map(|_| ())),
        _ => aes_kw::KwAes256::new_from_slice(key_bytes).map(|kw| kw.unwrap_key(wrapped, &mut unwrapped).map(|_| ())),
    };
    match result {
        Ok(Ok(())) => Ok(unwrapped),
        _ => Err(operation("AES-KW key unwrapping failed: the integrity check did not pass.")),
    }
}
