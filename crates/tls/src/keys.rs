//! Private keys in every PEM form users have, decrypted with a passphrase, classified and checked.
//!
//! Forms: PKCS#8 (`BEGIN PRIVATE KEY`), PKCS#1 RSA (`BEGIN RSA PRIVATE KEY`), SEC1 EC
//! (`BEGIN EC PRIVATE KEY`), Ed25519 in PKCS#8, encrypted PKCS#8 (`BEGIN ENCRYPTED PRIVATE KEY`,
//! PBES2 per RFC 8018: what `openssl genrsa -des3` writes under OpenSSL 3), and the legacy
//! OpenSSL form with `Proc-Type: 4,ENCRYPTED` and `DEK-Info` headers (RFC 1421 section 4.6,
//! key derived with OpenSSL's `EVP_BytesToKey`: MD5, one round, salt = first 8 bytes of the IV).

use pkcs8::der::{self, Decode, Encode};
use pkcs8::pkcs5;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};
use zeroize::Zeroizing;

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_RSA_PSS: &str = "1.2.840.113549.1.1.10";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_ED25519: &str = "1.3.101.112";
const OID_ED448: &str = "1.3.101.113";
const OID_DSA: &str = "1.2.840.10040.4.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_P521: &str = "1.3.132.0.35";

/// The kind of a private or public key, as far as serving TLS is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// RSA with this many modulus bits.
    Rsa(usize),
    EcdsaP256,
    EcdsaP384,
    EcdsaP521,
    Ed25519,
    Ed448,
    Dsa,
    RsaPss,
    Other,
}

impl KeyType {
    /// Why trove cannot serve with this key, or `None` when it can.
    pub fn refusal(self) -> Option<String> {
        match self {
            KeyType::Rsa(bits) if bits < 2048 => Some(format!("RSA key of {bits} bits is under the 2048-bit minimum")),
            KeyType::Rsa(_) | KeyType::EcdsaP256 | KeyType::EcdsaP384 | KeyType::Ed25519 => None,
            other => Some(format!("{other} keys are not supported by rustls")),
        }
    }
}

impl std::fmt::Display for KeyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyType::Rsa(bits) => write!(f, "RSA {bits}"),
            KeyType::EcdsaP256 => f.write_str("ECDSA P-256"),
            KeyType::EcdsaP384 => f.write_str("ECDSA P-384"),
            KeyType::EcdsaP521 => f.write_str("ECDSA P-521"),
            KeyType::Ed25519 => f.write_str("Ed25519"),
            KeyType::Ed448 => f.write_str("Ed448"),
            KeyType::Dsa => f.write_str("DSA"),
            KeyType::RsaPss => f.write_str("RSA-PSS"),
            KeyType::Other => f.write_str("unknown"),
        }
    }
}

/// Why one key block could not be turned into a usable key; the loader adds the path.
#[derive(Debug)]
pub(crate) enum KeyDecodeError {
    WrongPassphrase,
    Malformed(String),
    UnsupportedEncryption(String),
    Unsupported(KeyType),
}

/// One PEM block that holds a private key, before decryption.
pub(crate) struct KeyBlock {
    pem: pem::Pem,
}

impl KeyBlock {
    /// Finds the first private key block in `text`; `Ok(None)` when there is none.
    pub(crate) fn find(text: &[u8]) -> Result<Option<KeyBlock>, String> {
        let blocks = pem::parse_many(text).map_err(|e| e.to_string())?;
        Ok(blocks.into_iter().find(|b| b.tag().ends_with("PRIVATE KEY")).map(|pem| KeyBlock { pem }))
    }

    /// Whether a passphrase is needed to read the key.
    pub(crate) fn is_encrypted(&self) -> bool {
        self.pem.tag() == "ENCRYPTED PRIVATE KEY" || self.pem.headers().get("Proc-Type").is_some_and(|v| v.contains("ENCRYPTED"))
    }

    /// The algorithm word Apache passes to an `exec:` passphrase program (`RSA`, `EC`, ...).
    pub(crate) fn algorithm_hint(&self) -> &'static str {
        match self.pem.tag() {
            "EC PRIVATE KEY" => "EC",
            "DSA PRIVATE KEY" => "DSA",
            _ => "RSA",
        }
    }

    /// Decrypts (when encrypted) and decodes the key. `passphrase` is ignored for plain keys.
    pub(crate) fn decode(&self, passphrase: Option<&[u8]>) -> Result<(PrivateKeyDer<'static>, KeyType), KeyDecodeError> {
        let tag = self.pem.tag();
        let contents = self.pem.contents();
        if tag == "ENCRYPTED PRIVATE KEY" {
            let pass = passphrase.ok_or(KeyDecodeError::WrongPassphrase)?;
            let der = decrypt_pkcs8(contents, pass)?;
            return classify_pkcs8(der).map_err(|e| match e {
                // Garbage that happened to have valid padding: the passphrase was wrong.
                KeyDecodeError::Malformed(_) => KeyDecodeError::WrongPassphrase,
                other => other,
            });
        }
        let plain: Zeroizing<Vec<u8>> = match self.pem.headers().get("DEK-Info") {
            Some(dek) if self.is_encrypted() => {
                let pass = passphrase.ok_or(KeyDecodeError::WrongPassphrase)?;
                decrypt_legacy(dek, contents, pass)?
            }
            _ => Zeroizing::new(contents.to_vec()),
        };
        let legacy_encrypted = self.is_encrypted();
        let result = match tag {
            "PRIVATE KEY" => classify_pkcs8(plain.to_vec()),
            "RSA PRIVATE KEY" => classify_pkcs1(plain.to_vec()),
            "EC PRIVATE KEY" => classify_sec1(plain.to_vec()),
            "DSA PRIVATE KEY" => Err(KeyDecodeError::Unsupported(KeyType::Dsa)),
            other => Err(KeyDecodeError::Malformed(format!("unknown PEM block `{other}`"))),
        };
        match result {
            Err(KeyDecodeError::Malformed(_)) if legacy_encrypted => Err(KeyDecodeError::WrongPassphrase),
            other => other,
        }
    }
}

/// Decrypts an `EncryptedPrivateKeyInfo` (RFC 5958 section 3) into PKCS#8 DER.
fn decrypt_pkcs8(der_bytes: &[u8], pass: &[u8]) -> Result<Vec<u8>, KeyDecodeError> {
    let info = pkcs8::EncryptedPrivateKeyInfo::try_from(der_bytes).map_err(|e| KeyDecodeError::Malformed(format!("encrypted PKCS#8: {e}")))?;
    match info.decrypt(pass) {
        Ok(doc) => Ok(doc.as_bytes().to_vec()),
        // pkcs5 0.7 reports bad CBC padding after decryption as `EncryptFailed`; bad padding
        // means the key derived from the passphrase was wrong.
        Err(pkcs8::Error::EncryptedPrivateKey(pkcs5::Error::DecryptFailed | pkcs5::Error::EncryptFailed)) => Err(KeyDecodeError::WrongPassphrase),
        Err(pkcs8::Error::EncryptedPrivateKey(e)) => Err(KeyDecodeError::UnsupportedEncryption(format!("{} ({e})", scheme_name(&info.encryption_algorithm)))),
        // The decrypted bytes are not DER: the key stream was wrong.
        Err(pkcs8::Error::Asn1(_)) => Err(KeyDecodeError::WrongPassphrase),
        Err(e) => Err(KeyDecodeError::Malformed(e.to_string())),
    }
}

fn scheme_name(scheme: &pkcs5::EncryptionScheme<'_>) -> String {
    match scheme {
        pkcs5::EncryptionScheme::Pbes1(p) => format!("PBES1 {:?}", p.encryption),
        pkcs5::EncryptionScheme::Pbes2(p) => format!("PBES2 cipher {}", p.encryption.oid()),
        _ => "an unknown scheme".to_string(),
    }
}

/// OpenSSL's `EVP_BytesToKey` with MD5 and one round, as the legacy PEM encryption uses.
fn evp_bytes_to_key(pass: &[u8], salt: &[u8], len: usize) -> Zeroizing<Vec<u8>> {
    use md5::{Digest, Md5};
    let mut out = Zeroizing::new(Vec::with_capacity(len + 16));
    let mut prev: Vec<u8> = Vec::new();
    while out.len() < len {
        let mut h = Md5::new();
        h.update(&prev);
        h.update(pass);
        h.update(salt);
        prev = h.finalize().to_vec();
        out.extend_from_slice(&prev);
    }
    out.truncate(len);
    out
}

/// Decrypts the body of a legacy `Proc-Type: 4,ENCRYPTED` block given its `DEK-Info` value.
fn decrypt_legacy(dek_info: &str, data: &[u8], pass: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyDecodeError> {
    use cbc::cipher::{BlockDecryptMut, KeyIvInit, block_padding::Pkcs7};
    let (cipher, iv_hex) = dek_info.split_once(',').ok_or_else(|| KeyDecodeError::Malformed(format!("DEK-Info {dek_info:?} has no IV")))?;
    let iv = decode_hex(iv_hex.trim()).ok_or_else(|| KeyDecodeError::Malformed(format!("DEK-Info IV {iv_hex:?} is not hex")))?;
    let cipher = cipher.trim().to_ascii_uppercase();
    let (key_len, iv_len) = match cipher.as_str() {
        "DES-EDE3-CBC" => (24, 8),
        "AES-128-CBC" => (16, 16),
        "AES-192-CBC" => (24, 16),
        "AES-256-CBC" => (32, 16),
        other => return Err(KeyDecodeError::UnsupportedEncryption(format!("legacy PEM {other}"))),
    };
    if iv.len() != iv_len {
        return Err(KeyDecodeError::Malformed(format!("DEK-Info IV has {} bytes, {cipher} needs {iv_len}", iv.len())));
    }
    let key = evp_bytes_to_key(pass, &iv[..8], key_len);
    let out = match cipher.as_str() {
        "DES-EDE3-CBC" => cbc::Decryptor::<des::TdesEde3>::new_from_slices(&key, &iv)
            .map_err(|e| KeyDecodeError::Malformed(e.to_string()))?
            .decrypt_padded_vec_mut::<Pkcs7>(data),
        "AES-128-CBC" => cbc::Decryptor::<aes::Aes128>::new_from_slices(&key, &iv)
            .map_err(|e| KeyDecodeError::Malformed(e.to_string()))?
            .decrypt_padded_vec_mut::<Pkcs7>(data),
        "AES-192-CBC" => cbc::Decryptor::<aes::Aes192>::new_from_slices(&key, &iv)
            .map_err(|e| KeyDecodeError::Malformed(e.to_string()))?
            .decrypt_padded_vec_mut::<Pkcs7>(data),
        _ => cbc::Decryptor::<aes::Aes256>::new_from_slices(&key, &iv)
            .map_err(|e| KeyDecodeError::Malformed(e.to_string()))?
            .decrypt_padded_vec_mut::<Pkcs7>(data),
    };
    // Bad padding after CBC decryption almost always means a wrong passphrase.
    out.map(Zeroizing::new).map_err(|_| KeyDecodeError::WrongPassphrase)
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

fn rsa_bits(pkcs1_der: &[u8]) -> Result<usize, KeyDecodeError> {
    let key = pkcs1::RsaPrivateKey::from_der(pkcs1_der).map_err(|e| KeyDecodeError::Malformed(format!("RSA key: {e}")))?;
    Ok(uint_bits(key.modulus.as_bytes()))
}

/// Bit length of a big-endian unsigned integer.
pub(crate) fn uint_bits(bytes: &[u8]) -> usize {
    let bytes = match bytes.iter().position(|&b| b != 0) {
        Some(i) => &bytes[i..],
        None => return 0,
    };
    bytes.len() * 8 - bytes[0].leading_zeros() as usize
}

fn curve_type(oid: &str) -> KeyType {
    match oid {
        OID_P256 => KeyType::EcdsaP256,
        OID_P384 => KeyType::EcdsaP384,
        OID_P521 => KeyType::EcdsaP521,
        _ => KeyType::Other,
    }
}

fn classify_pkcs8(der_bytes: Vec<u8>) -> Result<(PrivateKeyDer<'static>, KeyType), KeyDecodeError> {
    let info = pkcs8::PrivateKeyInfo::try_from(der_bytes.as_slice()).map_err(|e| KeyDecodeError::Malformed(format!("PKCS#8: {e}")))?;
    let oid = info.algorithm.oid.to_string();
    let kind = match oid.as_str() {
        OID_RSA => KeyType::Rsa(rsa_bits(info.private_key)?),
        OID_EC => {
            let curve = info
                .algorithm
                .parameters_oid()
                .map(|o| o.to_string())
                .or_else(|_| {
                    sec1::EcPrivateKey::from_der(info.private_key)
                        .ok()
                        .and_then(|k| k.parameters.and_then(|p| p.named_curve()))
                        .map(|o| o.to_string())
                        .ok_or(())
                })
                .unwrap_or_default();
            curve_type(&curve)
        }
        OID_ED25519 => KeyType::Ed25519,
        OID_ED448 => KeyType::Ed448,
        OID_DSA => KeyType::Dsa,
        OID_RSA_PSS => KeyType::RsaPss,
        _ => KeyType::Other,
    };
    Ok((PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der_bytes)), kind))
}

fn classify_pkcs1(der_bytes: Vec<u8>) -> Result<(PrivateKeyDer<'static>, KeyType), KeyDecodeError> {
    let bits = rsa_bits(&der_bytes)?;
    Ok((PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der_bytes)), KeyType::Rsa(bits)))
}

fn classify_sec1(der_bytes: Vec<u8>) -> Result<(PrivateKeyDer<'static>, KeyType), KeyDecodeError> {
    let key = sec1::EcPrivateKey::from_der(&der_bytes).map_err(|e| KeyDecodeError::Malformed(format!("EC key: {e}")))?;
    let curve = key.parameters.and_then(|p| p.named_curve()).map(|o| o.to_string()).unwrap_or_default();
    let kind = curve_type(&curve);
    Ok((PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der_bytes)), kind))
}

/// Re-wraps any key as PKCS#8 DER (RFC 5208), the one form every rcgen backend accepts.
pub(crate) fn to_pkcs8(key: &PrivateKeyDer<'_>) -> Result<Zeroizing<Vec<u8>>, String> {
    use pkcs8::spki::AlgorithmIdentifierRef;
    match key {
        PrivateKeyDer::Pkcs8(k) => Ok(Zeroizing::new(k.secret_pkcs8_der().to_vec())),
        PrivateKeyDer::Pkcs1(k) => {
            let null = der::asn1::AnyRef::NULL;
            let info =
                pkcs8::PrivateKeyInfo::new(AlgorithmIdentifierRef { oid: OID_RSA.parse().expect("valid oid"), parameters: Some(null) }, k.secret_pkcs1_der());
            info.to_der().map(Zeroizing::new).map_err(|e| e.to_string())
        }
        PrivateKeyDer::Sec1(k) => {
            let ec = sec1::EcPrivateKey::from_der(k.secret_sec1_der()).map_err(|e| e.to_string())?;
            let curve = ec.parameters.and_then(|p| p.named_curve()).ok_or_else(|| "EC key names no curve".to_string())?;
            let curve_der = curve.to_der().map_err(|e| e.to_string())?;
            let params = der::asn1::AnyRef::try_from(curve_der.as_slice()).map_err(|e| e.to_string())?;
            let info =
                pkcs8::PrivateKeyInfo::new(AlgorithmIdentifierRef { oid: OID_EC.parse().expect("valid oid"), parameters: Some(params) }, k.secret_sec1_der());
            info.to_der().map(Zeroizing::new).map_err(|e| e.to_string())
        }
        _ => Err("unknown private key form".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evp_bytes_to_key_matches_openssl_for_known_vector() {
        // `openssl enc -des-ede3-cbc -P -md md5 -S 0102030405060708 -pass pass:secret`
        let key = evp_bytes_to_key(b"secret", &[1, 2, 3, 4, 5, 6, 7, 8], 24);
        assert_eq!(key.as_slice(), decode_hex("C9E5A1BD216DBE1317E230CEF48F38EE7F0E17AD64022144").unwrap());
    }

    #[test]
    fn uint_bits_ignores_leading_zero_bytes() {
        assert_eq!(uint_bits(&[0, 0x80, 0]), 16);
        assert_eq!(uint_bits(&[0x01]), 1);
        assert_eq!(uint_bits(&[]), 0);
    }

    #[test]
    fn hex_decoding_rejects_odd_and_non_hex() {
        assert_eq!(decode_hex("0aFF"), Some(vec![0x0a, 0xff]));
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("zz"), None);
    }
}
