//! Debian version ordering, as dpkg compares versions (deb-version(7)).
//!
//! A version is `[epoch:]upstream[-revision]`. Epochs compare numerically; upstream
//! and revision compare by alternating runs: non-digit runs character by character,
//! where `~` sorts before everything (even the end of the string), then letters, then
//! other characters; digit runs numerically. So `1.0~rc1 < 1.0 < 1.0a < 1.0+ds`.

use std::cmp::Ordering;

/// Compares two Debian versions the way `dpkg --compare-versions` does.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (a_epoch, a_upstream, a_revision) = split(a);
    let (b_epoch, b_upstream, b_revision) = split(b);
    a_epoch
        .cmp(&b_epoch)
        .then_with(|| compare_part(a_upstream, b_upstream))
        .then_with(|| compare_part(a_revision, b_revision))
}

/// Splits `[epoch:]upstream[-revision]`; the revision is after the LAST `-`.
fn split(version: &str) -> (u64, &str, &str) {
    let (epoch, rest) = match version.split_once(':') {
        Some((epoch, rest)) => (epoch.parse().unwrap_or(0), rest),
        None => (0, version),
    };
    match rest.rsplit_once('-') {
        Some((upstream, revision)) => (epoch, upstream, revision),
        None => (epoch, rest, ""),
    }
}

/// The weight of a character in a non-digit run (dpkg's `order`); `None` is the end.
fn weight(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(b'~') => -1,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(c) => i32::from(c) + 256,
    }
}

fn compare_part(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    let non_digit = |s: &[u8]| s.first().is_some_and(|c| !c.is_ascii_digit());
    while !a.is_empty() || !b.is_empty() {
        while non_digit(a) || non_digit(b) {
            let order = weight(a.first().copied()).cmp(&weight(b.first().copied()));
            if order != Ordering::Equal {
                return order;
            }
            // Equal weights here means both are the same non-digit character.
            a = &a[1..];
            b = &b[1..];
        }
        let digits = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
        let (a_len, b_len) = (digits(a), digits(b));
        let (a_num, b_num) = (&a[..a_len], &b[..b_len]);
        a = &a[a_len..];
        b = &b[b_len..];
        // Numeric comparison without overflow: drop leading zeros, then longer is
        // larger, then the first differing digit decides.
        let a_num = strip_zeros(a_num);
        let b_num = strip_zeros(b_num);
        let order = a_num.len().cmp(&b_num.len()).then_with(|| a_num.cmp(b_num));
        if order != Ordering::Equal {
            return order;
        }
    }
    Ordering::Equal
}

fn strip_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|&&c| c == b'0').count();
    &digits[zeros..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn assert_order(a: &str, order: Ordering, b: &str) {
        assert_eq!(compare(a, b), order, "{a} vs {b}");
        assert_eq!(compare(b, a), order.reverse(), "{b} vs {a}");
    }

    #[test]
    fn dpkg_ordering() {
        use Ordering::*;
        assert_order("1.0", Equal, "1.0");
        assert_order("0:1.0", Equal, "1.0");
        assert_order("1.0", Equal, "1.0-0");
        assert_order("1.00", Equal, "1.0");
        assert_order("1.0~rc1", Less, "1.0");
        assert_order("1.0~rc1", Greater, "1.0~~");
        assert_order("1.0~", Less, "1.0");
        assert_order("1.0", Less, "1.0+ds");
        assert_order("1.0a", Less, "1.0+ds");
        assert_order("1.0", Less, "1.0a");
        assert_order("1.0.9", Less, "1.0.13");
        assert_order("1.0-1", Less, "1.0-2");
        assert_order("1.0-9", Less, "1.0-10");
        assert_order("1:0.1", Greater, "9.9");
        assert_order("2:1.0", Greater, "1:9.9");
        assert_order("1.0-1", Less, "1.0.1-1");
        assert_order(
            "99999999999999999999999",
            Greater,
            "99999999999999999999998",
        );
    }

    #[test]
    fn qemu_versions() {
        use Ordering::*;
        assert_order("1:10.0.13+ds-0+deb13u1", Less, "1:10.0.13+ds-0+deb13u2");
        assert_order("1:10.0.13+ds-0+deb13u1", Greater, "1:10.0.2+ds-1");
        assert_order("1:10.0.13+ds-0+deb13u1", Less, "1:10.1.0+ds-1");
        assert_order(
            "1:10.0.13+ds-0+deb13u1",
            Greater,
            "1:10.0.13+ds-0+deb13u1~bpo12+1",
        );
        assert_order("1:10.1.0~rc1+ds-1", Less, "1:10.1.0+ds-1");
        assert_order("1:7.2+dfsg-7+deb12u18", Less, "1:10.0.13+ds-0+deb13u1");
    }
}
