//! Just enough DER to find a certificate's public key and validity.

/// One DER element: its tag, its full encoding, its content, and the
/// input that follows it.
struct Tlv<'a> {
    tag: u8,
    whole: &'a [u8],
    content: &'a [u8],
    rest: &'a [u8],
}

fn tlv(input: &[u8]) -> Option<Tlv<'_>> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (len, header) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in input.get(2..2 + n)? {
            len = (len << 8) | *b as usize;
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    let whole = input.get(..end)?;
    Some(Tlv {
        tag,
        whole,
        content: &whole[header..],
        rest: &input[end..],
    })
}

pub struct Certificate<'a> {
    pub spki: &'a [u8],
    pub not_after: i64,
}

impl<'a> Certificate<'a> {
    pub fn parse(der: &'a [u8]) -> Option<Self> {
        let tbs = tlv(tlv(der)?.content)?.content;
        let mut rest = tbs;
        // optional [0] version
        if rest.first() == Some(&0xa0) {
            rest = tlv(rest)?.rest;
        }
        let serial = tlv(rest)?;
        let algorithm = tlv(serial.rest)?;
        let issuer = tlv(algorithm.rest)?;
        let validity = tlv(issuer.rest)?;
        let subject = tlv(validity.rest)?;
        let spki = tlv(subject.rest)?;
        let not_before = tlv(validity.content)?;
        let not_after = tlv(not_before.rest)?;
        Some(Self {
            spki: spki.whole,
            not_after: parse_time(not_after.tag, not_after.content)?,
        })
    }
}

fn parse_time(tag: u8, value: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(value).ok()?;
    let text = text.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 => {
            let yy: i32 = text.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, text.get(2..)?)
        }
        0x18 => (text.get(..4)?.parse().ok()?, text.get(4..)?),
        _ => return None,
    };
    let num = |r: std::ops::Range<usize>| -> Option<u8> { rest.get(r)?.parse().ok() };
    let month = time::Month::try_from(num(0..2)?).ok()?;
    let date = time::Date::from_calendar_date(year, month, num(2..4)?).ok()?;
    let t = time::Time::from_hms(num(4..6)?, num(6..8)?, num(8..10)?).ok()?;
    Some(
        time::PrimitiveDateTime::new(date, t)
            .assume_utc()
            .unix_timestamp(),
    )
}

/// The raw public key of an SPKI: the EC point, or PKCS#1 RSAPublicKey.
pub fn spki_public_key(spki: &[u8]) -> Option<Vec<u8>> {
    let algorithm = tlv(tlv(spki)?.content)?;
    let oid = tlv(algorithm.content)?;
    if oid.content == super::OID_EC_PUBLIC_KEY {
        let curve = tlv(oid.rest)?.content;
        if curve != super::OID_P256 && curve != super::OID_P384 {
            return None;
        }
    }
    let bits = tlv(algorithm.rest)?;
    if bits.tag != 0x03 || bits.content.first() != Some(&0) {
        return None;
    }
    Some(bits.content[1..].to_vec())
}

/// (n, e) of a PKCS#1 RSAPublicKey, without leading zero bytes.
pub fn rsa_public_numbers(pkcs1: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let n = tlv(tlv(pkcs1)?.content)?;
    let e = tlv(n.rest)?;
    let strip = |v: &[u8]| {
        let start = v.iter().position(|b| *b != 0).unwrap_or(v.len());
        v[start..].to_vec()
    };
    Some((strip(n.content), strip(e.content)))
}
