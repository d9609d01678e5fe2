import Foundation
import Testing
import TickwireCore
@testable import TickwireFeeds

/// Bad input gets an error naming what and where, is counted, and is never taken for a clean run.
@Suite(.timeLimit(.minutes(5))) struct ITCHResyncTests {
    /// The fixture with one byte of the frame at `frameIndex` changed by `damage` (offset within the frame, new value).
    static func damaged(frameIndex: Int, at byteInFrame: Int, to value: (UInt8) -> UInt8) -> (bytes: [UInt8], offset: Int) {
        var bytes = Fixture.bytes(Fixture.itchSlice)
        var o = 0
        for _ in 0..<frameIndex { o += 2 + Int(bytes[o]) << 8 + Int(bytes[o + 1]) }
        bytes[o + byteInFrame] = value(bytes[o + byteInFrame])
        return (bytes, o)
    }

    enum Damage: String, CaseIterable, Sendable {
        case lowLengthByte0xFF, highLengthByte0x01, lowLengthByteZero, lengthThreeShort, lengthOneLong, typeByte
        func apply(frame: Int) -> (bytes: [UInt8], offset: Int) {
            switch self {
            case .lowLengthByte0xFF: ITCHResyncTests.damaged(frameIndex: frame, at: 1) { _ in 0xFF }
            case .highLengthByte0x01: ITCHResyncTests.damaged(frameIndex: frame, at: 0) { _ in 0x01 }
            case .lowLengthByteZero: ITCHResyncTests.damaged(frameIndex: frame, at: 1) { _ in 0 }
            case .lengthThreeShort: ITCHResyncTests.damaged(frameIndex: frame, at: 1) { $0 - 3 }
            case .lengthOneLong: ITCHResyncTests.damaged(frameIndex: frame, at: 1) { $0 + 1 }
            case .typeByte: ITCHResyncTests.damaged(frameIndex: frame, at: 2) { _ in UInt8(ascii: "z") }
            }
        }
    }

    /// One damaged length (or type) byte loses one message in skip mode, counted, instead of the rest of the file.
    @Test(arguments: Damage.allCases, [1, 100, 998])
    func oneDamagedByteLosesOneMessage(_ damage: Damage, frame: Int) {
        let (bytes, offset) = damage.apply(frame: frame)
        let stop = decodeAll(bytes, policy: .stop)
        #expect(stop.thrown?.offset == offset)
        #expect(stop.types.count == frame)
        var skipped = SkippedInput(bytes: 0, messages: 0)
        var delivered = 0, errors = 0
        bytes.withUnsafeBytes { buf in
            var reader = BinaryFILEReader(buf)
            while true {
                do {
                    guard try reader.next() != nil else { break }
                    delivered += 1
                } catch {
                    errors += 1
                    let s = reader.skipBadFrame()
                    skipped.bytes += s.bytes; skipped.messages += s.messages
                }
            }
        }
        #expect(delivered == 999, "\(damage) at frame \(frame)")
        #expect(errors == 1 && skipped.messages == 1)
        // The damaged frame's own bytes, as the type frames it: its length in the undamaged file.
        let original = Fixture.bytes(Fixture.itchSlice)
        #expect(skipped.bytes == 2 + Int(original[offset]) << 8 + Int(original[offset + 1]))
    }

    /// Any one byte of any frame's prefix or type, set to any other value: at most a handful of messages lost, and
    /// every detected error counted. Seeded; the seed and the case are in the failure message.
    @Test func randomHeaderDamageLosesAtMostAHandful() {
        let original = Fixture.bytes(Fixture.itchSlice)
        var starts = [Int](), o = 0
        while o < original.count { starts.append(o); o += 2 + Int(original[o]) << 8 + Int(original[o + 1]) }
        let seed: UInt64 = 20_191_230
        var state = seed
        func next() -> Int { state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407; return Int(state >> 33) }
        for trial in 0..<300 {
            var bytes = original
            let frame = next() % starts.count, at = starts[frame] + next() % 3
            let value = UInt8((Int(bytes[at]) + 1 + next() % 255) % 256)
            bytes[at] = value
            var delivered = 0, errors = 0, skippedMessages = 0
            bytes.withUnsafeBytes { buf in
                var reader = BinaryFILEReader(buf)
                while true {
                    do { guard try reader.next() != nil else { break }; delivered += 1 } catch {
                        errors += 1
                        skippedMessages += reader.skipBadFrame().messages
                    }
                }
            }
            let lost = starts.count - delivered
            #expect(lost <= 3, "seed \(seed) trial \(trial): byte \(at) (frame \(frame)) set to \(value): \(lost) lost")
            #expect(lost == 0 || errors >= 1, "seed \(seed) trial \(trial): a loss without a counted error")
        }
    }

    /// The source counts what it skipped and says so afterwards (decode turns that into exit 1).
    @Test func fileSourceCountsAndReportsWhatItSkipped() throws {
        let (bytes, offset) = Damage.lowLengthByte0xFF.apply(frame: 100)
        let path = Fixture.scratch("damaged_20191230.itch50", bytes)
        let clean = try ITCHFileSource(path: Fixture.itchSlice, options: FeedOptions(errorPolicy: .skip))
        _ = try collect(clean)
        #expect(clean.skipSummary == nil)
        let source = try ITCHFileSource(path: path, options: FeedOptions(errorPolicy: .skip))
        let sink = try collect(source)
        #expect(!sink.events.isEmpty)
        #expect(counter(source, "messages") == 999 && counter(source, "errors") == 1 && counter(source, "errors.bad_length") == 1)
        #expect(counter(source, "skipped_messages") == 1 && counter(source, "skipped_bytes") == 37)
        let summary = try #require(source.skipSummary)
        #expect(summary.contains("1 bad frames skipped (37 bytes, 1 damaged messages)"))
        #expect(summary.contains("ITCH frame at byte \(offset): message type 'U' declares 255 bytes; it must be 35"))
        let stopping = try ITCHFileSource(path: path)
        #expect(throws: ITCHError(offset: offset, problem: .badLength(type: .orderReplace, expected: 35, declared: 255))) {
            try collect(stopping)
        }
    }
}
