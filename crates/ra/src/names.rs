//! What a name in a certificate may look like, on every door (admin apply, ACME CSR and
//! identifiers, EST CSR): subject fields and SANs hold no control, bidirectional-override
//! or invisible formatting characters, and DNS names are LDH names or valid A-labels
//! (IDNA 2008) within RFC 1035's lengths.
//!
//! A NUL or a right-to-left override in a name makes one name look like another: to a C
//! verifier that stops at the NUL (`good.example\0.evil.com`), to a person reading a
//! reversed run of text, or to a pattern that matches the part before the trick. Every
//! refusal names the field and the character.

use vellum_core::error::{Error, Result};

/// Longest DNS name (RFC 1035 §2.3.4, without the trailing dot).
pub const MAX_DNS_NAME: usize = 253;
/// Longest DNS label (RFC 1035 §2.3.4).
pub const MAX_DNS_LABEL: usize = 63;

/// The first character of `value` a certificate name may not carry: C0 and C1 controls
/// (NUL among them) and DEL, bidirectional overrides, embeddings, isolates and marks, and
/// the invisible zero-width characters and byte-order mark.
pub fn forbidden_char(value: &str) -> Option<(usize, char)> {
    value.chars().enumerate().find(|(_, c)| is_forbidden(*c))
}

fn is_forbidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'                  // ARABIC LETTER MARK
            | '\u{200B}'..='\u{200F}'   // zero-width space/non-joiner/joiner, LRM, RLM
            | '\u{202A}'..='\u{202E}'   // LRE, RLE, PDF, LRO, RLO
            | '\u{2060}'..='\u{2064}'   // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}'   // LRI, RLI, FSI, PDI
            | '\u{FEFF}'                // zero-width no-break space (BOM)
            | '\u{FFF9}'..='\u{FFFB}' // interlinear annotation
        )
}

/// `U+0000 (NUL)`, `U+202E (RIGHT-TO-LEFT OVERRIDE)`: how a refusal names a character.
pub fn describe_char(c: char) -> String {
    let name = match c {
        '\0' => "NUL",
        '\t' => "TAB",
        '\n' => "LINE FEED",
        '\r' => "CARRIAGE RETURN",
        '\u{1B}' => "ESCAPE",
        '\u{7F}' => "DELETE",
        '\u{061C}' => "ARABIC LETTER MARK",
        '\u{200B}' => "ZERO WIDTH SPACE",
        '\u{200C}' => "ZERO WIDTH NON-JOINER",
        '\u{200D}' => "ZERO WIDTH JOINER",
        '\u{200E}' => "LEFT-TO-RIGHT MARK",
        '\u{200F}' => "RIGHT-TO-LEFT MARK",
        '\u{202A}' => "LEFT-TO-RIGHT EMBEDDING",
        '\u{202B}' => "RIGHT-TO-LEFT EMBEDDING",
        '\u{202C}' => "POP DIRECTIONAL FORMATTING",
        '\u{202D}' => "LEFT-TO-RIGHT OVERRIDE",
        '\u{202E}' => "RIGHT-TO-LEFT OVERRIDE",
        '\u{2066}' => "LEFT-TO-RIGHT ISOLATE",
        '\u{2067}' => "RIGHT-TO-LEFT ISOLATE",
        '\u{2068}' => "FIRST STRONG ISOLATE",
        '\u{2069}' => "POP DIRECTIONAL ISOLATE",
        '\u{FEFF}' => "ZERO WIDTH NO-BREAK SPACE",
        c if c.is_control() => "control character",
        _ => "invisible formatting character",
    };
    format!("U+{:04X} ({name})", c as u32)
}

/// Why `value` may not be a name in a certificate, in the words every door uses
/// (`contains the character U+0000 (NUL) at position 13; …`); `None` when it may.
pub fn text_problem(value: &str) -> Option<String> {
    forbidden_char(value).map(|(at, c)| {
        format!(
            "contains the character {} at position {}; names in certificates may not \
             hold control, bidirectional-override or invisible formatting characters",
            describe_char(c),
            at + 1
        )
    })
}

/// Refuses a subject field or SAN value holding a character [`forbidden_char`] finds,
/// naming `field`, the character and where it is.
pub fn check_text(field: &str, value: &str) -> Result<()> {
    match text_problem(value) {
        None => Ok(()),
        Some(problem) => Err(Error::invalid(field, problem)),
    }
}

/// Why `name` is not a DNS name a certificate may carry (`None`: it is one). A leading
/// `*.` (wildcard) is allowed; the rest must be LDH labels of 1–63 characters, 253 in
/// all, not an IP address, no all-numeric top-level label, and any `xn--` label a valid
/// A-label (checked with the `idna` crate, UTS #46 strict: STD3 rules, hyphen rules, DNS
/// lengths).
pub fn dns_name_problem(name: &str) -> Option<String> {
    if let Some((_, c)) = forbidden_char(name) {
        return Some(format!("contains the character {}", describe_char(c)));
    }
    let bare = name.strip_prefix("*.").unwrap_or(name);
    if bare.is_empty() {
        return Some("is empty".into());
    }
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return Some("is an IP address; put it in an IP SAN (type ip)".into());
    }
    if bare.len() > MAX_DNS_NAME {
        return Some(format!(
            "is {} characters long; a DNS name has at most {MAX_DNS_NAME}",
            bare.len()
        ));
    }
    for label in bare.split('.') {
        if label.is_empty() {
            return Some("has an empty label (two dots in a row, or a dot at an end)".into());
        }
        if label.len() > MAX_DNS_LABEL {
            return Some(format!(
                "has a label of {} characters; a label has at most {MAX_DNS_LABEL}",
                label.len()
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Some(if c == '*' {
                "may hold '*' only as the whole leftmost label (\"*.example.com\")".into()
            } else if c.is_ascii() {
                format!(
                    "holds {c:?} in the label {label:?}; DNS labels take letters, digits and '-'"
                )
            } else {
                format!(
                    "holds the non-ASCII character {c:?} in the label {label:?}; write \
                     internationalized names as A-labels (\"xn--…\")"
                )
            });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some(format!(
                "has the label {label:?}, which starts or ends with '-'"
            ));
        }
        if label.len() >= 4 && &label[2..4] == "--" && !label[..2].eq_ignore_ascii_case("xn") {
            return Some(format!(
                "has the label {label:?}: labels with \"--\" in the third and fourth \
                 positions are reserved (RFC 5891 §4.2.3.1) unless they are A-labels (\"xn--\")"
            ));
        }
        if label.len() >= 4 && label[..4].eq_ignore_ascii_case("xn--") {
            let lower = label.to_ascii_lowercase();
            match idna::domain_to_ascii_strict(&lower) {
                Ok(back) if back == lower => {}
                _ => {
                    return Some(format!(
                        "has the label {label:?}, which is not a valid A-label (its Punycode \
                         does not decode to a valid internationalized label)"
                    ))
                }
            }
        }
    }
    let tld = bare.rsplit('.').next().unwrap_or_default();
    if tld.chars().all(|c| c.is_ascii_digit()) {
        return Some(format!(
            "ends in the all-numeric label {tld:?}, which no DNS name has (an address belongs \
             in an IP SAN)"
        ));
    }
    None
}

/// True when `name` is a DNS name a certificate may carry (see [`dns_name_problem`]).
pub fn valid_dns_name(name: &str) -> bool {
    dns_name_problem(name).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bidi_and_invisible_characters_are_named() {
        let e = check_text("common_name", "good.example\0.evil.com")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("common_name: "), "{e}");
        assert!(
            e.contains("U+0000 (NUL)") && e.contains("position 13"),
            "{e}"
        );
        let e = check_text("organization", "Acme \u{202E}moc.live")
            .unwrap_err()
            .to_string();
        assert!(e.contains("U+202E (RIGHT-TO-LEFT OVERRIDE)"), "{e}");
        for c in [
            '\u{7}', '\u{7F}', '\u{85}', '\u{200B}', '\u{2067}', '\u{FEFF}',
        ] {
            assert!(forbidden_char(&format!("a{c}b")).is_some(), "{c:?}");
        }
        // Letters of any script are fine in subject fields.
        assert!(check_text("organization", "Müller & Söhne GmbH").is_ok());
        assert!(check_text("organization", "株式会社").is_ok());
    }

    #[test]
    fn dns_names_are_ldh_or_a_labels_within_rfc1035_lengths() {
        for ok in [
            "a.example",
            "*.ok.example",
            "xn--mller-kva.example",
            "xn--bcher-kva.ch",
            "a-b.example",
            &format!("{}.example", "a".repeat(63)),
        ] {
            assert!(valid_dns_name(ok), "{ok}");
        }
        for (bad, why) in [
            ("good.example\0.evil.com", "U+0000"),
            ("bad_label.example", "'_'"),
            ("müller.example", "A-labels"),
            ("xn--zz.example", "not a valid A-label"),
            ("ab--cd.example", "reserved"),
            ("-a.example", "starts or ends"),
            ("a..example", "empty label"),
            ("127.0.0.1", "IP address"),
            ("::1", "IP address"),
            ("host.123", "all-numeric"),
            ("a.*.example", "'*'"),
        ] {
            let p = dns_name_problem(bad).unwrap_or_default();
            assert!(p.contains(why), "{bad:?}: {p}");
        }
        let long_label = format!("{}.example", "a".repeat(64));
        assert!(dns_name_problem(&long_label)
            .unwrap()
            .contains("at most 63"));
        let long_name = vec!["a".repeat(60); 5].join(".");
        assert!(dns_name_problem(&long_name)
            .unwrap()
            .contains("at most 253"));
    }
}
