/// What can go wrong setting up or running the network between the parties.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A `[network]` setting is out of range or contradicts another.
    #[error("{0}")]
    Setting(String),
    /// TLS material is missing, unreadable or invalid.
    #[error("TLS ({what}): {detail}")]
    Tls {
        /// Which material.
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// The model party could not be reached, or refused the connection.
    #[error("connecting to {address}: {detail}")]
    Connect {
        /// Where.
        address: String,
        /// Why it failed.
        detail: String,
    },
    /// Listening or serving failed.
    #[error("serving on {address}: {detail}")]
    Serve {
        /// Where.
        address: String,
        /// Why it failed.
        detail: String,
    },
}
