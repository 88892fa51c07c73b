//! Reading Prometheus text exposition in tests.

/// The value of one series (`name{labels}` exactly as exported) in a metrics text, 0 when
/// absent (Prometheus counters start at 0, so an absent series reads as nothing counted).
/// Panics on a value that is not a number.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().unwrap())
        })
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_series_by_its_exact_name() {
        let text = "# HELP x_total X.\nx_total{a=\"1\"} 3\nx_total{a=\"2\"} 4.5\n";
        assert_eq!(metric(text, "x_total{a=\"2\"}"), 4.5);
        assert_eq!(metric(text, "x_total{a=\"1\"}"), 3.0);
        assert_eq!(metric(text, "x_total"), 0.0);
    }
}
