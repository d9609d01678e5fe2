/// Settings every source factory reads; each source uses the ones that concern it.
public struct FeedOptions: Sendable {
    /// How a user gives the trading date, for errors that need one: `tickwire decode` and `tickwire import` take
    /// `--date`; `tickwire run` has no such flag and reads `[feeds] date` from its config file.
    public static let howToSetDate =
        "give the date: --date YYYY-MM-DD (tickwire decode, tickwire import), or date = \"YYYY-MM-DD\" under [feeds] in the config file (tickwire run --config FILE)"
    /// The same for `tickwire run` alone, which reports a source's error in its own words.
    public static let howToSetDateForRun =
        "set date = \"YYYY-MM-DD\" under [feeds] in the config file and pass it with --config FILE (tickwire run has no --date)"

    /// The trading date of ITCH and LOBSTER timestamps; nil takes it from the file name.
    public var date: TradingDate?
    /// Stop at the first bad frame or row, or skip and count. For files only: a network source (MoldUDP64) never
    /// stops on what arrives from the network; it drops a bad datagram, counts it and recovers its range.
    public var errorPolicy: ErrorPolicy
    /// MoldUDP64: where to send re-requests for missed sequences; nil disables retransmission.
    public var retransmitEndpoint: UDPEndpoint?
    /// MoldUDP64: how long a gap may stay open (waiting for line B or a retransmission) before a GAP event is
    /// published and the handler moves on.
    public var gapTimeoutNanos: Int64
    /// MoldUDP64: how long to wait for the other line before re-requesting a gap.
    public var requestDelayNanos: Int64
    /// MoldUDP64: a receive socket's kernel buffer (SO_RCVBUF).
    public var receiveBufferBytes: Int
    /// MoldUDP64: give up when nothing arrives for this long (0 waits until stopped).
    public var idleTimeoutNanos: Int64
    /// ITCH: price levels per side to publish as `MD.XNAS.<SYM>.BOOK` (0: top of book only, as QUOTE).
    public var depthLevels = 0

    public init(date: TradingDate? = nil, errorPolicy: ErrorPolicy = .stop, retransmitEndpoint: UDPEndpoint? = nil,
                gapTimeoutNanos: Int64 = 250_000_000, requestDelayNanos: Int64 = 2_000_000,
                receiveBufferBytes: Int = 8 << 20, idleTimeoutNanos: Int64 = 0) {
        self.date = date; self.errorPolicy = errorPolicy; self.retransmitEndpoint = retransmitEndpoint
        self.gapTimeoutNanos = gapTimeoutNanos; self.requestDelayNanos = requestDelayNanos
        self.receiveBufferBytes = receiveBufferBytes; self.idleTimeoutNanos = idleTimeoutNanos
    }
}
