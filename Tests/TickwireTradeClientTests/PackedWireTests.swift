import Testing
import TickwireCore
import TickwireTradeClient

/// A batch packed in one frame (docs/PROTOCOL.md, "Packed batches"): what `pack` makes, `unpack` gives back, and
/// any frame whose own structure is broken is refused naming the byte.
@Suite(.timeLimit(.minutes(5))) struct PackedWireTests {
    let frames = (0..<3).map { i in
        TradeWire.encodeRequest(TradeRequest(desk: "D\(i)", symbol: "AAPL", side: .sell, quantity: Quantity(e8: 100_000_000),
                                             price: Price(e8: 19_995_000_000), clientOrderID: "ord-\(i)"))
    }

    @Test func framesRoundTripInOrder() throws {
        let packed = TradeWire.pack(TradeWire.submitPacked, frames)
        #expect(packed[0] == 0x04 && packed[1] == TradeWire.version && packed[2] == 3 && packed[3] == 0)
        #expect(packed.count == 4 + frames.reduce(0) { $0 + 2 + $1.count })
        #expect(try TradeWire.unpack(packed, type: TradeWire.submitPacked) == frames)
        // Empty frames and a frame of 65,535 bytes are frames too.
        let odd: [[UInt8]] = [[], [UInt8](repeating: 7, count: 65_535), [1]]
        #expect(try TradeWire.unpack(TradeWire.pack(TradeWire.repliesPacked, odd), type: TradeWire.repliesPacked) == odd)
    }

    @Test func repliesDecodeWhereTheyLie() throws {
        let replies: [TradeReply] = [.ack(clientOrderID: "a-1", seq: 7, duplicate: false),
                                     .reject(clientOrderID: "a-2", RejectReason(.invalidField, "quantity must be positive")),
                                     .ack(clientOrderID: "a-1", seq: 7, duplicate: true)]
        let packed = TradeWire.pack(TradeWire.repliesPacked, replies.map(TradeWire.encodeReply))
        #expect(try TradeWire.decodeReplies(packed: packed) == replies)
        for n in 0..<packed.count {
            #expect(throws: RejectReason.self, "\(n) bytes") { _ = try TradeWire.decodeReplies(packed: Array(packed.prefix(n))) }
        }
        // A reply cut inside its own frame is refused, not read on into the next one.
        var short = TradeWire.encodeReply(replies[0]); short.removeLast()
        #expect(throws: RejectReason.self) {
            _ = try TradeWire.decodeReplies(packed: TradeWire.pack(TradeWire.repliesPacked, [short, TradeWire.encodeReply(replies[1])]))
        }
    }

    @Test func everyCutIsRefused() {
        let packed = TradeWire.pack(TradeWire.submitPacked, frames)
        for n in 0..<packed.count {
            #expect(throws: RejectReason.self, "\(n) bytes") { _ = try TradeWire.unpack(Array(packed.prefix(n)), type: TradeWire.submitPacked) }
        }
    }

    @Test func aBrokenStructureIsRefusedNamingTheByte() {
        func refusal(_ bytes: [UInt8], _ type: UInt8 = TradeWire.submitPacked) -> String {
            do { _ = try TradeWire.unpack(bytes, type: type); return "accepted" } catch { return error.text }
        }
        let packed = TradeWire.pack(TradeWire.submitPacked, frames)
        #expect(refusal(packed, TradeWire.repliesPacked).hasPrefix("byte 0: not a packed frame"))
        var version = packed; version[1] = 9
        #expect(refusal(version).hasPrefix("byte 1: unsupported version"))
        #expect(refusal([0x04, 1, 0, 0]).hasPrefix("byte 2: a packed frame holds at least one frame"))
        var long = packed; long[4] = 0xff   // the first frame's length runs past the end
        #expect(refusal(long) == "byte 4: frame 1 of 3 runs past the end of the packed frame")
        #expect(refusal(packed + [0]) == "byte \(packed.count): 1 trailing bytes")
        var fewer = packed; fewer[2] = 2   // a count that leaves the third frame over
        #expect(refusal(fewer).hasSuffix("trailing bytes"))
    }
}
