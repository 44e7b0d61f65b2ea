//! Two fields of an X.509 certificate that webpki does not expose: the serial number (what a
//! deny-list names) and the subject's common name (what `flotilla certs --add-client` signs
//! under). A minimal DER walk over a certificate; malformed input gives `None`, never a panic.
#![deny(clippy::indexing_slicing)]

/// DER tags this walk meets.
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const INTEGER: u8 = 0x02;
const OBJECT_IDENTIFIER: u8 = 0x06;
const UTF8_STRING: u8 = 0x0c;
/// `[0] EXPLICIT Version` of a v3 certificate.
const VERSION: u8 = 0xa0;
/// The OID 2.5.4.3 (id-at-commonName), DER-encoded.
const COMMON_NAME_OID: &[u8] = &[0x55, 0x04, 0x03];

/// One tag-length-value item.
#[derive(Clone, Copy, Debug)]
struct Item<'a> {
    tag: u8,
    value: &'a [u8],
}

/// The first item of `input` and what follows it.
fn item(input: &[u8]) -> Option<(Item<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        // Long form: 1 to 4 length bytes (a certificate is far below 4 GiB).
        let count = usize::from(first & 0x7f);
        if !(1..=4).contains(&count) {
            return None;
        }
        let (bytes, rest) = rest.split_at_checked(count)?;
        let length = bytes
            .iter()
            .fold(0usize, |length, &byte| (length << 8) | usize::from(byte));
        (length, rest)
    };
    let (value, rest) = rest.split_at_checked(length)?;
    Some((Item { tag, value }, rest))
}

/// The first item of `input`, if it has tag `tag`, and what follows it.
fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (found, rest) = item(input)?;
    (found.tag == tag).then_some((found.value, rest))
}

/// The fields of the certificate's `tbsCertificate`, from the serial number on (the optional
/// version skipped).
fn tbs_from_serial(certificate: &[u8]) -> Option<&[u8]> {
    let (certificate, _) = expect(certificate, SEQUENCE)?;
    let (tbs, _) = expect(certificate, SEQUENCE)?;
    match item(tbs)? {
        (Item { tag: VERSION, .. }, rest) => Some(rest),
        _ => Some(tbs),
    }
}

/// The certificate's serial number, big-endian, without the leading zero bytes DER adds to keep
/// it positive (so `00 8f 01` and `8f 01` name the same serial, as `openssl x509 -serial` shows
/// it).
#[must_use]
pub fn serial_number(certificate: &[u8]) -> Option<&[u8]> {
    let (serial, _) = expect(tbs_from_serial(certificate)?, INTEGER)?;
    Some(strip_leading_zeros(serial))
}

/// `bytes` without its leading zero bytes.
#[must_use]
pub fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let zeros = bytes.iter().take_while(|&&byte| byte == 0).count();
    bytes.get(zeros..).unwrap_or_default()
}

/// The subject's common name, when the subject is exactly one UTF-8 common name (as every
/// Flotilla certificate's is).
#[must_use]
pub fn subject_common_name(certificate: &[u8]) -> Option<String> {
    let (_serial, rest) = expect(tbs_from_serial(certificate)?, INTEGER)?;
    let (_signature, rest) = expect(rest, SEQUENCE)?;
    let (_issuer, rest) = expect(rest, SEQUENCE)?;
    let (_validity, rest) = expect(rest, SEQUENCE)?;
    let (subject, _) = expect(rest, SEQUENCE)?;
    let (names, after) = expect(subject, SET)?;
    let (attribute, others) = expect(names, SEQUENCE)?;
    if !after.is_empty() || !others.is_empty() {
        return None;
    }
    let (oid, rest) = expect(attribute, OBJECT_IDENTIFIER)?;
    let (value, rest) = expect(rest, UTF8_STRING)?;
    if oid != COMMON_NAME_OID || !rest.is_empty() {
        return None;
    }
    String::from_utf8(value.to_vec()).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::certs::ClusterCa;
    use crate::identity::ClusterId;

    #[test]
    fn a_signed_certificate_shows_its_serial_and_a_ca_its_name() {
        let cluster = ClusterId::new("der-test").unwrap();
        let ca = ClusterCa::generate(&cluster).unwrap();
        let one = ca.client_identity("one").unwrap();
        let two = ca.client_identity("two").unwrap();
        let serial_one = serial_number(&one.cert_chain[0]).unwrap();
        let serial_two = serial_number(&two.cert_chain[0]).unwrap();
        assert!(!serial_one.is_empty());
        assert_ne!(serial_one, serial_two);
        // Each CA's name is the cluster's with a random suffix of its own.
        let name = subject_common_name(&ca.certificate()).unwrap();
        let suffix = name.strip_prefix("Flotilla CA der-test ").unwrap();
        assert_eq!(suffix.len(), 16, "{name}");
    }

    #[test]
    fn truncated_or_foreign_input_names_nothing() {
        let cluster = ClusterId::new("der-test").unwrap();
        let ca = ClusterCa::generate(&cluster).unwrap();
        let certificate = ca.certificate().to_vec();
        for length in [0, 1, 2, 5, 40, certificate.len() / 2] {
            assert_eq!(serial_number(&certificate[..length]), None, "{length}");
            assert_eq!(subject_common_name(&certificate[..length]), None);
        }
        assert_eq!(serial_number(&[0x30, 0x85, 1, 1, 1, 1, 1]), None);
        assert_eq!(serial_number(b"not a certificate at all"), None);
    }

    #[test]
    fn leading_zeros_do_not_make_another_serial() {
        assert_eq!(strip_leading_zeros(&[0, 0, 0x8f, 1]), &[0x8f, 1]);
        assert_eq!(strip_leading_zeros(&[0, 0]), &[] as &[u8]);
    }
}
