import Testing
import TickwireCore

@Suite(.timeLimit(.minutes(5))) struct SubjectTests {
    @Test(arguments: ["MD.XNAS.AAPL.TRADE", "MD.BINANCE-FUTURES.BTCUSDT.TRADE", "ALERT.PRICE_JUMP.AAPL", "TRADE.DESK7.AAPL", "A"])
    func validSubjects(_ text: String) throws {
        #expect(try Subject(text).text == text)
    }

    @Test func invalidSubjectsSayWhy() {
        let cases: [(String, String)] = [
            ("", "empty"),
            ("MD..AAPL", "token 2 is empty"),
            (".MD", "token 1 is empty"),
            ("MD.", "token 2 is empty"),
            ("MD.*.TRADE", "wildcard"),
            ("MD.>", "wildcard"),
            ("MD.AA PL", "' '"),
            ("MD.AAPL$", "'$'"),
            (Array(repeating: "A", count: 17).joined(separator: "."), "17 tokens"),
            (String(repeating: "A", count: 256), "256 bytes"),
        ]
        for (text, reason) in cases {
            #expect {
                try Subject(text)
            } throws: { error in
                (error as? SubjectError)?.description.contains(reason) == true
            }
        }
    }

    @Test func patternsMatchLikeNATS() throws {
        let s = try Subject("MD.XNAS.AAPL.TRADE")
        #expect(try SubjectPattern("MD.XNAS.AAPL.TRADE").matches(s))
        #expect(try SubjectPattern("MD.*.AAPL.TRADE").matches(s))
        #expect(try SubjectPattern("MD.XNAS.>").matches(s))
        #expect(try SubjectPattern(">").matches(s))
        #expect(try SubjectPattern("MD.*.*.*").matches(s))
        #expect(!(try SubjectPattern("MD.*.AAPL").matches(s)))
        #expect(!(try SubjectPattern("MD.XNAS.AAPL.TRADE.>").matches(s)))
        #expect(!(try SubjectPattern("MD.XNAS.AAPL.TRADE.*").matches(s)))
        #expect(!(try SubjectPattern("MD.XNAS.MSFT.>").matches(s)))
        #expect(try SubjectPattern("MD.XNAS.*.TRADE").zmqPrefix == "MD.XNAS.")
        #expect(try SubjectPattern("MD.>").zmqPrefix == "MD.")
        #expect(try SubjectPattern("MD.XNAS.AAPL.TRADE").zmqPrefix == "MD.XNAS.AAPL.TRADE")
        #expect(try SubjectPattern(">").zmqPrefix == "")
    }

    @Test func badPatternsAreRefused() {
        #expect(throws: SubjectError.self) { try SubjectPattern("MD.>.AAPL") }
        #expect(throws: SubjectError.self) { try SubjectPattern("MD.A*") }
        #expect(throws: SubjectError.self) { try SubjectPattern("") }
    }

    @Test func sanitizedTokens() {
        #expect(Subject.marketData(venue: "XNAS", symbol: "BRK.A ", kind: .trade).text == "MD.XNAS.BRK_A.TRADE")
    }

    @Test func subjectTableInterns() {
        let t = SubjectTable()
        let a = t.intern(text: "MD.X.A.TRADE"), b = t.intern(text: "MD.X.B.TRADE")
        #expect(a != b)
        #expect(t.intern(text: "MD.X.A.TRADE") == a)
        #expect(t.text(b) == "MD.X.B.TRADE")
        #expect(t.count == 2)
    }
}

@Suite(.timeLimit(.minutes(5))) struct NumbersAndTimeTests {
    @Test func fixedPointRoundTrips() throws {
        for text in ["0", "1", "-1", "289.87", "0.00000001", "92000000000", "-0.5", "10000.12345678"] {
            #expect(try Price(parsing: text).description == text)
        }
        #expect(try Price(parsing: "1.50").description == "1.5")
        #expect(try Price(parsing: "1.500000000").description == "1.5")
        #expect(Price(units: 2_898_700, decimals: 4).description == "289.87")
    }

    @Test func fixedPointRejects() {
        for bad in ["", "-", "1.2.3", "1e5", "abc", "0.000000001", "99999999999999"] {
            #expect(throws: FixedPointError.self) { try Price(parsing: bad) }
        }
    }

    @Test func timesParseAndPrint() throws {
        let t = try Nanos(parsing: "2019-12-30T14:30:00.000000230Z")
        #expect(t.rawValue == 1_577_716_200_000_000_230)
        #expect(t.iso8601 == "2019-12-30T14:30:00.000000230Z")
        #expect(try Nanos(parsing: "1577716200000000230") == t)
        #expect(try Nanos(parsing: "2019-12-30").rawValue == 1_577_664_000_000_000_000)
        #expect(try Nanos(parsing: "2020-02-22T00:00:02.5Z").rawValue == 1_582_329_602_500_000_000)
        // A UTC offset is taken off: the same instant however it is written.
        #expect(try Nanos(parsing: "2019-12-30T09:30:00.000000230-05:00") == t)
        #expect(try Nanos(parsing: "2019-12-30T15:30:00.000000230+01:00") == t)
        #expect(try Nanos(parsing: "2019-12-30T14:30:00.000000230+00:00") == t)
        for bad in ["", "2019-13-01", "2019-02-30", "2019-12-30T25:00", "yesterday", "2019-12-30T14:30:00.1234567891Z",
                    "2019-12-30T14:30:00+25:00", "2019-12-30T14:30:00+0100"] {
            #expect(throws: TimeError.self) { try Nanos(parsing: bad) }
        }
    }
}

@Suite(.timeLimit(.minutes(5))) struct WireCodecTests {
    /// One event of every kind, each field distinct (negative words, a source, flags), through encode and
    /// decode. A kind added to `EventKind` without an event here fails the first check.
    static let oneOfEachKind: [Event] = [
        .trade(0, price: Price(e8: 28_987_000_000), size: Quantity(e8: 100 * FixedPoint.scale), side: .buy, tradeID: 42,
               eventTime: Nanos(1), knownTime: Nanos(2)),
        .quote(0, bid: Price(e8: -1), bidSize: Quantity(e8: 2), ask: Price(e8: 3), askSize: Quantity(e8: 4), eventTime: Nanos(5), knownTime: Nanos(6)),
        .status(0, Status(category: .trading, state: UInt8(ascii: "H"), reason: "LUDP"), eventTime: Nanos(7), knownTime: Nanos(8)),
        .bust(0, tradeID: 99, price: Price(e8: 123_456), size: Quantity(e8: 7), side: .sell, eventTime: Nanos(9), knownTime: Nanos(10)),
        .gap(0, first: 10, last: UInt64.max, scope: .source, eventTime: Nanos(11), knownTime: Nanos(12)),
        // BOOK: one price level (ITCHNormalizer): price, size, level, orders; `flags` the side.
        Event(subjectID: 0, kind: .book, flags: Side.sell.rawValue, source: 3, eventTime: Nanos(13), knownTime: Nanos(14),
              a: 28_987_000_000, b: 500 * FixedPoint.scale, c: 2, d: 17),
        // ALERT: rule code, observed value, threshold, reference.
        Event(subjectID: 0, kind: .alert, source: UInt16.max, eventTime: Nanos(-15), knownTime: Nanos(16),
              a: 7, b: -250_000_000, c: 100_000_000, d: Int64.min),
        // RISK: position, notional, P&L, used basis points.
        Event(subjectID: 0, kind: .risk, eventTime: Nanos(17), knownTime: Nanos(Int64.max),
              a: -1_000 * FixedPoint.scale, b: Int64.max, c: -5_005 * FixedPoint.scale, d: 10_001),
    ]

    @Test func oneOfEachKindCoversEveryKind() {
        #expect(Self.oneOfEachKind.map(\.kind) == EventKind.allCases)
    }

    @Test(arguments: WireCodecTests.oneOfEachKind)
    func roundTripsEveryKind(_ event: Event) throws {
        var e = event
        e.seq = 77
        let bytes = WireCodec.encode(e, subjectSeq: 5)
        #expect(bytes.count == 72)
        #expect(bytes[1] == e.kind.rawValue)
        let (back, subjectSeq) = try WireCodec.decode(bytes)
        #expect(back == e)
        #expect(subjectSeq == 5)
        // The typed bodies read back what went in.
        switch e.kind {
        case .trade: #expect(back.trade == e.trade)
        case .quote: #expect(back.quote == Quote(bid: Price(e8: -1), bidSize: Quantity(e8: 2), ask: Price(e8: 3), askSize: Quantity(e8: 4)))
        case .status: #expect(back.status == Status(category: .trading, state: UInt8(ascii: "H"), reason: "LUDP"))
        case .bust: #expect(back.bustBody == Bust(tradeID: 99, price: Price(e8: 123_456), size: Quantity(e8: 7), side: .sell))
        case .gap: #expect(back.gapBody == Gap(first: 10, last: UInt64.max, scope: .source))
        case .book: #expect(back.flags == Side.sell.rawValue && back.source == 3 && back.d == 17)
        case .alert: #expect(back.alertBody == Alert(rule: 7, value: -250_000_000, threshold: 100_000_000, reference: Int64.min))
        case .risk: #expect(back.riskBody == RiskUse(position: -1_000 * FixedPoint.scale, notional: Int64.max,
                                                      pnl: -5_005 * FixedPoint.scale, usedBasisPoints: 10_001))
        }
    }

    @Test func layoutIsLittleEndianAsDocumented() {
        var e = Event.trade(0, price: Price(e8: 0x0102), size: Quantity(e8: 3), side: .sell, tradeID: 4, eventTime: Nanos(5), knownTime: Nanos(6))
        e.seq = 0x0A0B
        let b = WireCodec.encode(e, subjectSeq: 9)
        #expect(Array(b[0..<8]) == [1, 1, 2, 0, 0, 0, 32, 0])
        #expect(Array(b[8..<10]) == [0x0B, 0x0A])
        #expect(b[16] == 9 && b[24] == 5 && b[32] == 6)
        #expect(Array(b[40..<42]) == [0x02, 0x01])
        #expect(b[48] == 3 && b[56] == 4)
    }

    @Test func malformedPayloadsFailClearly() {
        let good = WireCodec.encode(.quote(0, bid: .zero, bidSize: .zero, ask: .zero, askSize: .zero, eventTime: .zero, knownTime: .zero), subjectSeq: 0)
        #expect(throws: WireError.short(length: 10, needed: 40)) { try WireCodec.decode(Array(good[0..<10])) }
        var wrongVersion = good; wrongVersion[0] = 9
        #expect(throws: WireError.unsupportedVersion(9)) { try WireCodec.decode(wrongVersion) }
        var unknownKind = good; unknownKind[1] = 200
        #expect(throws: WireError.unknownKind(200)) { try WireCodec.decode(unknownKind) }
        #expect(throws: WireError.bodyTooShort(kind: .quote, length: 8, needed: 32)) { try WireCodec.decode(Array(good[0..<48])) }
        // A body_length beyond what the frame holds is a cut message, whatever the first 32 bytes say.
        var overlong = good; overlong[6] = 64
        #expect(throws: WireError.bodyTooShort(kind: .quote, length: 32, needed: 64)) { try WireCodec.decode(overlong) }
        // Longer bodies that are there (a later minor version) are read and their extra bytes ignored.
        var longer = good + [UInt8](repeating: 7, count: 8); longer[6] = 40
        #expect((try? WireCodec.decode(longer)) != nil)
        #expect(WireError.unknownKind(200).description.contains("byte 1"))
    }

    @Test func jsonPrintsExactNumbers() {
        var e = Event.trade(0, price: Price(e8: 28_987_000_000), size: Quantity(e8: 100 * FixedPoint.scale), side: .buy, tradeID: 42,
                            eventTime: Nanos(1_577_716_200_000_000_230), knownTime: Nanos(1_577_716_200_000_000_999))
        e.seq = 3
        let line = EventText.jsonLine(WireEvent(subject: "MD.XNAS.AAPL.TRADE", subjectSeq: 1, event: e))
        #expect(line == #"{"subject":"MD.XNAS.AAPL.TRADE","kind":"TRADE","seq":3,"subject_seq":1,"event_time":1577716200000000230,"known_time":1577716200000000999,"price":289.87,"size":100,"side":"buy","trade_id":42}"#)
    }
}
