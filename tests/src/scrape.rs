//! Reading a running server over HTTP the way the tests check it: the names in a
//! REST list, and one sample of its Prometheus `/metrics`. Every helper answers
//! `None` when the server does not answer, so callers poll with a deadline.

use std::time::Duration;

use serde_json::Value;

/// The `name`s of the items of the list at `url` (first page of up to 1000).
pub async fn names(http: &reqwest::Client, url: &str) -> Option<Vec<String>> {
    let list: Value = http
        .get(format!("{url}?size=1000"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some(
        list["items"]
            .as_array()?
            .iter()
            .filter_map(|i| i["name"].as_str().map(str::to_owned))
            .collect(),
    )
}

/// The value of the sample `series` (`name` or `name{labels}`) on `base`'s
/// `/metrics`.
pub async fn metric(http: &reqwest::Client, base: &str, series: &str) -> Option<f64> {
    let text = http
        .get(format!("{base}/metrics"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    metric_value(&text, series)
}

/// The value of one sample in Prometheus text, e.g. `metric_value(text,
/// "meridian_kds_live_streams{zone=\"a\"}")`.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::metric_value;

    #[test]
    fn samples_are_found_by_their_exact_series() {
        let text = "# TYPE x gauge\nmeridian_global_duty_leader 1\n\
                    meridian_kds_live_streams{zone=\"a\"} 2\nmeridian_kds_live_streams{zone=\"ab\"} 5\n";
        assert_eq!(metric_value(text, "meridian_global_duty_leader"), Some(1.0));
        assert_eq!(
            metric_value(text, "meridian_kds_live_streams{zone=\"a\"}"),
            Some(2.0)
        );
        assert_eq!(metric_value(text, "meridian_kds_live"), None);
    }
}
