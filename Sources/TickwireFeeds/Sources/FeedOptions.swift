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
    /// MoldUDP64: most messages asked for in one re-request (1...65,534), and re-requests outstanding at once.
    public var maxMessagesPerRequest: UInt64 = 256
    public var maxOutstandingRequests = 64
    /// MoldUDP64: a well-formed packet whose sequence is further than this beyond the highest one seen is not
    /// a gap but a session reset (or garbage): dropped and counted (`sequence_jumps`); with a snapshot server a
    /// snapshot decides where the session is.
    public var maxSequenceJump: UInt64 = 1_000_000
    /// MoldUDP64: a GLIMPSE-style snapshot server (SoupBinTCP) to start from and to rebuild the books from
    /// after an unrecoverable gap; nil: none (a gap is published and the books go on as they are).
    public var snapshotEndpoint: UDPEndpoint? = nil
    public var snapshotUsername = ""
    public var snapshotPassword = ""
    /// A snapshot must be complete within this; a failed one is tried again after `snapshotRetryNanos`.
    public var snapshotTimeoutNanos: Int64 = 10_000_000_000
    public var snapshotRetryNanos: Int64 = 1_000_000_000
    /// Datagram bytes held while the first snapshot comes (more are dropped, counted, and recovered as a gap).
    public var snapshotBufferBytes = 64 << 20

    public init(date: TradingDate? = nil, errorPolicy: ErrorPolicy = .stop, retransmitEndpoint: UDPEndpoint? = nil,
                gapTimeoutNanos: Int64 = 250_000_000, requestDelayNanos: Int64 = 2_000_000,
                receiveBufferBytes: Int = 8 << 20, idleTimeoutNanos: Int64 = 0) {
        self.date = date; self.errorPolicy = errorPolicy; self.retransmitEndpoint = retransmitEndpoint
        self.gapTimeoutNanos = gapTimeoutNanos; self.requestDelayNanos = requestDelayNanos
        self.receiveBufferBytes = receiveBufferBytes; self.idleTimeoutNanos = idleTimeoutNanos
    }
}
