//! Registering a metric family: the project's prefix on its name, and the family registered
//! in the registry it is created for (what every metrics module does for each of its families).

use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// `multibridge_<short>`.
pub(crate) fn name(short: &str) -> String {
    format!("{}{short}", crate::METRIC_PREFIX)
}

/// Creates families registered in one registry.
pub(crate) struct Families<'a>(pub(crate) &'a Registry);

impl Families<'_> {
    /// An integer gauge family.
    pub(crate) fn int_gauge(
        &self,
        short: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntGaugeVec, prometheus::Error> {
        let g = IntGaugeVec::new(Opts::new(name(short), help), labels)?;
        self.0.register(Box::new(g.clone()))?;
        Ok(g)
    }

    /// A float gauge family.
    pub(crate) fn gauge(
        &self,
        short: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<GaugeVec, prometheus::Error> {
        let g = GaugeVec::new(Opts::new(name(short), help), labels)?;
        self.0.register(Box::new(g.clone()))?;
        Ok(g)
    }

    /// An integer counter family.
    pub(crate) fn counter(
        &self,
        short: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntCounterVec, prometheus::Error> {
        let c = IntCounterVec::new(Opts::new(name(short), help), labels)?;
        self.0.register(Box::new(c.clone()))?;
        Ok(c)
    }
}
