use super::*;
use crate::audit::{StatusFilter, format_time};

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn parses_every_parameter() {
    let q = parse_query(
        &pairs(&[
            ("since", "2026-11-27T10:00:00Z"),
            ("until", "2026-11-27T12:00:00+01:00"),
            ("model", "iris"),
            ("status", "rejected"),
            ("min_latency_us", "50"),
            ("limit", "10"),
            ("order", "asc"),
            ("cursor", &encode_cursor(Cursor::after_id(255))),
            ("format", "csv"),
        ]),
        false,
    )
    .unwrap();
    assert_eq!(q.limit, 10);
    assert_eq!(q.cursor, Some(Cursor::after_id(255)));
    let tail = Cursor {
        id: 7,
        txid: Some(1234),
        at: None,
    };
    assert_eq!(decode_cursor(&encode_cursor(tail)).unwrap(), tail);
    let newest_first = Cursor {
        id: 9,
        txid: None,
        at: Some(1_795_737_600_123_456),
    };
    assert_eq!(
        decode_cursor(&encode_cursor(newest_first)).unwrap(),
        newest_first
    );
    assert!(decode_cursor("t12").is_err());
    for signed in [
        "c+10",
        "c-1",
        "t+1-2",
        "t1-+2",
        "d+5-1",
        "c",
        "c 10",
        "c10000000000000000",
    ] {
        assert!(decode_cursor(signed).is_err(), "{signed}");
    }
    assert_eq!(q.format, Format::Csv);
    assert_eq!(q.filter.status, StatusFilter::Rejected);
    assert_eq!(q.filter.order, Order::Asc);
    assert_eq!(
        format_time(&q.filter.until.unwrap()),
        "2026-11-27T11:00:00.000000Z"
    );
}

#[test]
fn errors_name_the_parameter() {
    for (k, v) in [
        ("since", "yesterday"),
        ("limit", "0"),
        ("limit", "1001"),
        ("status", "fine"),
        ("cursor", "123"),
        ("order", "up"),
        ("min_latency_us", "-1"),
        ("model", ""),
        ("colour", "red"),
    ] {
        let e = parse_query(&pairs(&[(k, v)]), false).unwrap_err();
        assert_eq!(e.name, k, "{e}");
    }
    let e = parse_query(&pairs(&[("since", "2026-11-27T10:00:00 01:00")]), false).unwrap_err();
    assert!(e.reason.contains("%2B"), "{e}");
    let e = parse_query(&pairs(&[("model", "a"), ("model", "b")]), false).unwrap_err();
    assert_eq!(e.name, "model");
    assert!(parse_query(&pairs(&[("limit", "5")]), true).is_err());
}

/// The documented parameters against the parsers.
mod documented {
    use super::*;
    use utoipa::IntoParams;

    fn names<P: IntoParams>() -> Vec<String> {
        P::into_params(|| None)
            .into_iter()
            .map(|p| p.name)
            .collect()
    }

    /// The documented parameters are the ones the parsers take: each is accepted, and a name
    /// not documented is refused.
    #[test]
    fn documented_parameters_are_the_accepted_ones() {
        let value = |name: &str| match name {
            "since" | "until" => "2026-11-27T00:00:00Z",
            "status" => "ok",
            "order" => "asc",
            "format" => "csv",
            "limit" | "min_latency_us" => "5",
            "cursor" => "c0",
            "bucket" => "5m",
            _ => "x",
        };
        let pairs = |list: &[String]| -> Vec<(String, String)> {
            list.iter()
                .map(|n| (n.clone(), value(n).to_string()))
                .collect()
        };
        let mut audit = names::<FilterArgs>();
        audit.extend(names::<PageParams>());
        assert_eq!(audit.len(), 13);
        parse_query(&pairs(&audit), false).unwrap();
        let summary = names::<FilterArgs>();
        parse_query(&pairs(&summary), true).unwrap();
        for extra in ["order", "limit", "cursor", "format"] {
            assert!(!summary.contains(&extra.to_string()));
            assert!(
                parse_query(&pairs(&[extra.to_string()]), true).is_err(),
                "{extra}"
            );
        }
        assert!(parse_query(&pairs(&["colour".into()]), false).is_err());
        let now = chrono::Utc::now();
        parse_timeseries(&pairs(&names::<TimeseriesParams>()), now).unwrap();
        assert!(parse_timeseries(&pairs(&["limit".into()]), now).is_err());
    }
}
