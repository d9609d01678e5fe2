import Testing
import TickwireCore
@testable import TickwireFeeds

/// Every message of a BinaryFILE buffer, decoded with the given policy; the error thrown on `.stop`.
func decodeAll(_ bytes: [UInt8], policy: ErrorPolicy) -> (types: [UInt8], bodies: [ITCHBody], errors: [ITCHError], thrown: ITCHError?) {
    var types = [UInt8](), bodies = [ITCHBody](), errors = [ITCHError]()
    var thrown: ITCHError?
    bytes.withUnsafeBytes { buf in
        var reader = BinaryFILEReader(buf)
        while true {
            do {
                guard let m = try reader.next() else { break }
                types.append(m.typeByte); bodies.append(m.body)
            } catch {
                let error = error as! ITCHError
                errors.append(error)
                if policy == .stop { thrown = error; break }
                reader.skipBadFrame()
            }
        }
    }
    return (types, bodies, errors, thrown)
}

@Suite struct ITCHDecoderTests {
    @Test func sliceHasTheDocumentedCountsPerType() {
        let r = decodeAll(Fixture.bytes(Fixture.itchSlice), policy: .stop)
        #expect(r.thrown == nil)
        var counts: [String: Int] = [:]
        for t in r.types { counts[String(UnicodeScalar(t)), default: 0] += 1 }
        #expect(counts == ["A": 367, "U": 225, "F": 193, "D": 167, "E": 28, "X": 6, "I": 4, "P": 4, "Q": 4, "S": 1, "C": 1])
    }

    @Test func sliceFieldsDecodeExactly() {
        let r = decodeAll(Fixture.bytes(Fixture.itchSlice), policy: .stop)
        // The first message: D, locate 3041, timestamp 09:30:00.000000230.
        #expect(r.types.first == UInt8(ascii: "D"))
        let system = r.bodies.first { if case .systemEvent = $0 { true } else { false } }
        #expect(system == .systemEvent(eventCode: UInt8(ascii: "Q")))
        let trades = r.bodies.compactMap { b -> ITCHBody? in if case .trade = b { b } else { nil } }
        #expect(trades.first == .trade(reference: 0, side: UInt8(ascii: "B"), shares: 84, stock: ITCHStock("ROKU"),
                                       price: 1_377_000, matchNumber: 53487))
        let crosses = r.bodies.compactMap { b -> ITCHBody? in if case .crossTrade = b { b } else { nil } }
        #expect(crosses.first == .crossTrade(shares: 6185, stock: ITCHStock("HDS"), price: 404_300, matchNumber: 53497,
                                             crossType: UInt8(ascii: "O")))
    }

    @Test func firstMessageHeader() {
        let bytes = Fixture.bytes(Fixture.itchSlice)
        bytes.withUnsafeBytes { buf in
            var reader = BinaryFILEReader(buf)
            let m = try! reader.next()!
            #expect(m.type == .orderDelete)
            #expect(m.length == 19)
            #expect(m.stockLocate == 0x0be1)
            #expect(m.timestamp == 34_200_000_000_230)
            #expect(reader.offset == 21)
        }
    }

    @Test func zeroLengthPrefixFileIsRejectedAtItsFirstFrame() {
        let bytes = Fixture.bytes(Fixture.zeroPrefix)
        let stop = decodeAll(bytes, policy: .stop)
        #expect(stop.thrown == ITCHError(offset: 0, problem: .zeroLengthPrefix))
        #expect(stop.types.isEmpty)
        #expect(stop.thrown!.description.contains("byte 0"))
        // Skipping resynchronises on each type byte: every one of the 12,012 frames is counted, none delivered.
        let skip = decodeAll(bytes, policy: .skip)
        #expect(skip.errors.count == 12_012)
        #expect(skip.types.isEmpty)
        #expect(skip.errors[1].offset == 14)   // S is 12 bytes: the second frame starts at 2 + 12.
    }

    @Test func truncatedTailNamesTheOffsetOfTheLastFrame() {
        var bytes = Fixture.bytes(Fixture.itchSlice)
        let fullCount = bytes.count
        bytes.removeLast(5)
        let r = decodeAll(bytes, policy: .stop)
        #expect(r.types.count == 999)
        guard case .truncatedMessage(let declared, let available)? = r.thrown?.problem else {
            Issue.record("expected truncatedMessage, got \(String(describing: r.thrown))"); return
        }
        #expect(r.thrown!.offset + 2 + declared == fullCount)
        #expect(available == declared - 5)
        bytes = [0x00]
        #expect(decodeAll(bytes, policy: .stop).thrown == ITCHError(offset: 0, problem: .truncatedPrefix(available: 1)))
    }

    @Test func badLengthAndUnknownTypeAreTypedAndSkippable() {
        let slice = Fixture.bytes(Fixture.itchSlice)
        let first = Array(slice[0..<21])                       // a D, 19 bytes
        let badLength: [UInt8] = [0x00, 0x05, UInt8(ascii: "D"), 1, 2, 3, 4]
        let unknown: [UInt8] = [0x00, 0x03, UInt8(ascii: "z"), 0, 0]
        let bytes = first + badLength + unknown + first
        let stop = decodeAll(bytes, policy: .stop)
        #expect(stop.thrown == ITCHError(offset: 21, problem: .badLength(type: .orderDelete, expected: 19, declared: 5)))
        #expect(stop.thrown!.description == "ITCH frame at byte 21: message type 'D' declares 5 bytes; it must be 19")
        // A length that disagrees with the type is damage: the reader resynchronises on the next position where
        // well-formed frames follow (byte 33), stepping over both bad frames at once.
        let skip = decodeAll(bytes, policy: .skip)
        #expect(skip.types.count == 2)
        #expect(skip.errors == [ITCHError(offset: 21, problem: .badLength(type: .orderDelete, expected: 19, declared: 5))])
        bytes.withUnsafeBytes { buf in
            var reader = BinaryFILEReader(buf, offset: 21)
            #expect(reader.skipBadFrame() == SkippedInput(bytes: 12, messages: 1) && reader.offset == 33)
        }
    }

    @Test(arguments: ITCHMessageType.allCases)
    func everyTypeDecodesAtItsLength(_ type: ITCHMessageType) {
        var msg = [UInt8](repeating: 0x20, count: type.length)
        msg[0] = type.rawValue
        let bytes = [UInt8(type.length >> 8), UInt8(type.length & 0xff)] + msg
        let r = decodeAll(bytes, policy: .stop)
        #expect(r.thrown == nil)
        #expect(r.types == [type.rawValue])
        let short = [UInt8(0), UInt8(type.length - 1)] + msg.dropLast()
        #expect(decodeAll(short, policy: .stop).thrown?.problem == .badLength(type: type, expected: type.length, declared: type.length - 1))
    }

    @Test func moldUDP64PacketsDeliverSequencedMessagesInPlace() {
        let slice = Fixture.bytes(Fixture.itchSlice)
        var packet = [UInt8]()
        MoldUDP64.writeHeader(session: MoldUDP64.session("TEST"), sequence: 41, count: 2, into: &packet)
        packet += slice[0..<21] + slice[0..<21]
        var seen: [(UInt64, UInt8)] = []
        packet.withUnsafeBytes { buf in
            do { try MoldUDP64.forEachMessage(in: buf) { seq, m in seen.append((seq, m.typeByte)) } }
            catch { Issue.record("\(error)") }
        }
        #expect(seen.map(\.0) == [41, 42])
        func failure(_ bytes: [UInt8]) -> ITCHError? {
            bytes.withUnsafeBytes { buf -> ITCHError? in
                do { try MoldUDP64.forEachMessage(in: buf) { _, _ in Issue.record("a bad packet delivers nothing") }; return nil }
                catch { return error as? ITCHError }
            }
        }
        #expect(failure(Array(packet.dropLast(3)))?.offset == 41)
        #expect(failure(packet + [0])?.problem == .trailingBytes(count: 1))
        #expect(failure([UInt8](repeating: 0, count: 7))?.problem == .truncatedPacketHeader(available: 7))
    }
}

@Suite struct EasternTimeTests {
    @Test func nasdaqFileNameGivesTheDate() throws {
        #expect(TradingDate.fromNASDAQFileName("/data/12302019.NASDAQ_ITCH50") == (try TradingDate(parsing: "2019-12-30")))
        #expect(TradingDate.fromNASDAQFileName("12302019_SNIPPET.NASDAQ_ITCH50")?.description == "2019-12-30")
        #expect(TradingDate.fromNASDAQFileName("nasdaq_itch50.bin") == nil)
        #expect(TradingDate.fromISOInFileName("AAPL_2012-06-21_34200000_57600000_message_10.csv")?.description == "2012-06-21")
        #expect(throws: FeedConfigError.self) { try TradingDate(parsing: "2019-02-30") }
    }

    @Test func winterIsUTCMinus5AndSummerUTCMinus4() throws {
        let winter = EasternClock(date: try TradingDate(parsing: "2019-12-30"))
        // 09:30:00.000000230 EST = 14:30:00.000000230Z
        #expect(winter.utc(nanosSinceMidnight: 34_200_000_000_230) == (try Nanos(parsing: "2019-12-30T14:30:00.000000230Z")))
        let summer = EasternClock(date: try TradingDate(parsing: "2012-06-21"))
        #expect(summer.utc(nanosSinceMidnight: 34_200 * Nanos.perSecond) == (try Nanos(parsing: "2012-06-21T13:30:00Z")))
    }

    @Test func switchDaysFollowTheUSRule() throws {
        // 2019: DST from Sunday 10 March to Sunday 3 November; 2006 (old rule): 2 April to 29 October.
        let march = EasternClock(date: try TradingDate(parsing: "2019-03-10"))
        #expect(march.utc(nanosSinceMidnight: 3_600 * Nanos.perSecond) == (try Nanos(parsing: "2019-03-10T06:00:00Z")))
        #expect(march.utc(nanosSinceMidnight: 4 * 3_600 * Nanos.perSecond) == (try Nanos(parsing: "2019-03-10T08:00:00Z")))
        let november = EasternClock(date: try TradingDate(parsing: "2019-11-03"))
        #expect(november.utc(nanosSinceMidnight: 0) == (try Nanos(parsing: "2019-11-03T04:00:00Z")))
        #expect(november.utc(nanosSinceMidnight: 3 * 3_600 * Nanos.perSecond) == (try Nanos(parsing: "2019-11-03T08:00:00Z")))
        #expect(!EasternClock.isDaylightSaving(try TradingDate(parsing: "2019-03-09")))
        #expect(EasternClock.isDaylightSaving(try TradingDate(parsing: "2019-03-11")))
        #expect(EasternClock.isDaylightSaving(try TradingDate(parsing: "2019-11-02")))
        #expect(!EasternClock.isDaylightSaving(try TradingDate(parsing: "2019-11-04")))
        #expect(EasternClock.isDaylightSaving(try TradingDate(parsing: "2006-04-03")))
        #expect(!EasternClock.isDaylightSaving(try TradingDate(parsing: "2006-04-01")))
        #expect(!EasternClock.isDaylightSaving(try TradingDate(parsing: "2006-10-30")))
    }
}
