//! The private key (and its certificate) checked on this machine before anything connects:
//! a wrong file is a configuration error that says what the file is and what is expected,
//! not a "relay rejected key" after a round trip. ssh-key (RustCrypto) reads the OpenSSH
//! formats and decrypts the key, so the passphrase is proven locally.

use std::path::Path;

/// What a key file turned out to be, when it is usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind {
    /// An OpenSSH private key (decrypted if it was encrypted).
    OpenSsh {
        /// Its algorithm, e.g. `ssh-ed25519`.
        algorithm: String,
        /// Its public half, `ALGORITHM BASE64`, to match against a certificate.
        public: String,
    },
    /// A PEM (PKCS#1, PKCS#8, SEC1) key that libssh2 reads through OpenSSL.
    Pem,
}

/// Checks that `text`, read from `path`, is a private key flytube can use with
/// `passphrase`. The error names the file and what is wrong with it.
pub fn check_private_key(
    path: &Path,
    text: &str,
    passphrase: Option<&str>,
) -> Result<KeyKind, String> {
    let name = path.display();
    let first = text.trim_start();
    let public_prefixes = ["ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-"];
    if public_prefixes.iter().any(|p| first.starts_with(p)) {
        return Err(format!(
            "identity {name} is a public key (a line like \"ssh-ed25519 AAAA...\"); give the \
             private key file, usually the same name without .pub"
        ));
    }
    if first.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----") {
        return check_openssh(path, text, passphrase);
    }
    if first.starts_with("-----BEGIN ") && first.contains("PRIVATE KEY-----") {
        let encrypted =
            first.contains("ENCRYPTED PRIVATE KEY") || first.contains("Proc-Type: 4,ENCRYPTED");
        if encrypted && passphrase.is_none() {
            return Err(no_passphrase(path));
        }
        return Ok(KeyKind::Pem);
    }
    Err(format!(
        "identity {name} is not a private key (expected a file starting with \
         \"-----BEGIN OPENSSH PRIVATE KEY-----\", as ssh-keygen writes)"
    ))
}

fn check_openssh(path: &Path, text: &str, passphrase: Option<&str>) -> Result<KeyKind, String> {
    let name = path.display();
    let key = ssh_key::PrivateKey::from_openssh(text)
        .map_err(|e| format!("identity {name} is not a valid OpenSSH private key: {e}"))?;
    let key = if key.is_encrypted() {
        let Some(passphrase) = passphrase else {
            return Err(no_passphrase(path));
        };
        key.decrypt(passphrase).map_err(|_| {
            format!(
                "the passphrase does not decrypt identity {name}: check auth.passphrase_file \
                 (or FLYTUBE_PASSPHRASE)"
            )
        })?
    } else {
        key
    };
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| format!("identity {name}: cannot encode its public key: {e}"))?;
    Ok(KeyKind::OpenSsh {
        algorithm: key.algorithm().as_str().to_string(),
        public: public
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" "),
    })
}

fn no_passphrase(path: &Path) -> String {
    format!(
        "identity {} is encrypted and no passphrase is set: set auth.passphrase_file (or \
         --passphrase-file, or FLYTUBE_PASSPHRASE)",
        path.display()
    )
}

/// Checks that the certificate in `text` (from `path`) certifies `key`.
pub fn check_certificate_matches(path: &Path, text: &str, key: &KeyKind) -> Result<(), String> {
    let KeyKind::OpenSsh { public, .. } = key else {
        return Ok(());
    };
    let cert = ssh_key::Certificate::from_openssh(text.trim()).map_err(|e| {
        format!(
            "certificate {} is not an OpenSSH certificate ({e}); ssh-keygen -s CA ... writes \
             KEY-cert.pub",
            path.display()
        )
    })?;
    let certified = ssh_key::PublicKey::from(cert.public_key().clone())
        .to_openssh()
        .map_err(|e| format!("certificate {}: {e}", path.display()))?;
    let certified: String = certified
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    if certified != *public {
        return Err(format!(
            "certificate {} certifies another key than the identity: have the identity's \
             public key signed, or point --certificate at its own certificate",
            path.display()
        ));
    }
    Ok(())
}
