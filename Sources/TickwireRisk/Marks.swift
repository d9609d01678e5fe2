import Synchronization
import TickwireCore

/// The last market price of each symbol, regardless of venue: written by a market-data consumer, read by the
/// trade service's risk checks.
///
/// Each symbol gets a slot in a fixed array of atomics, so a mark is one relaxed-enough store and a check one
/// load, with no lock between the market-data thread and the trade thread. Giving a symbol its slot takes a
/// lock, once per symbol.
final class MarkBoard: @unchecked Sendable {
    let capacity: Int
    private let prices: UnsafeMutablePointer<Atomic<Int64>>
    private let index = Locked<[String: Int32]>([:])
    /// Symbols that found the board full; their marks are dropped.
    let overflowed = Atomic<UInt64>(0)

    init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
        prices = .allocate(capacity: capacity)
        for i in 0..<capacity { (prices + i).initialize(to: Atomic(0)) }
    }

    deinit {
        prices.deinitialize(count: capacity)
        prices.deallocate()
    }

    /// The slot of `symbol`, given it on first sight; -1 when the board is full.
    func slot(_ symbol: some StringProtocol) -> Int32 {
        index.withLock { map in
            if let i = map[String(symbol)] { return i }
            guard map.count < capacity else {
                overflowed.add(1, ordering: .relaxed)
                return -1
            }
            let i = Int32(map.count)
            map[String(symbol)] = i
            return i
        }
    }

    /// The slot of `symbol` if it has one.
    func existingSlot(_ symbol: String) -> Int32 { index.withLock { $0[symbol] ?? -1 } }

    @inline(__always)
    func store(_ slot: Int32, _ price: Int64) { prices[Int(slot)].store(price, ordering: .releasing) }

    /// The last mark in e8, or 0 for none.
    @inline(__always)
    func load(_ slot: Int32) -> Int64 { slot < 0 ? 0 : prices[Int(slot)].load(ordering: .acquiring) }
}

/// Marks a `RiskEngine` to the market from the event stream: one per market-data consumer thread.
///
/// Not thread-safe: it may be handed to another thread (hence `@unchecked Sendable`), but one thread at a time
/// calls `mark`. Per event it does an array lookup by `SubjectID` and one atomic
/// store; the first event of a subject resolves its symbol (a String split and a locked dictionary lookup).
public final class RiskMarker: @unchecked Sendable {
    public let subjects: SubjectTable
    /// The mutable part in one struct, not checked dynamically: one thread at a time calls `mark`.
    @exclusivity(unchecked) var slots: SlotCache

    /// Per `SubjectID`: -2 not yet seen, -1 not a mark (not MD TRADE/QUOTE, or the board is full), else the slot.
    struct SlotCache {
        let board: MarkBoard
        let subjects: SubjectTable
        var slots: [Int32] = []

        @inline(__always)
        mutating func mark(_ event: Event) {
            let id = Int(event.subjectID)
            if id >= slots.count || slots[id] == -2 { resolve(event.subjectID) }
            let slot = slots[id]
            guard slot >= 0 else { return }
            switch event.kind {
            case .trade:
                if event.a > 0 { board.store(slot, event.a) }
            case .quote:
                // (bid + ask) / 2 without overflow; both positive.
                if event.a > 0 && event.b > 0 && event.c > 0 && event.d > 0 {
                    board.store(slot, event.a / 2 &+ event.c / 2 &+ (event.a & event.c & 1))
                }
            default:
                return
            }
        }

        mutating func mark(batch: UnsafeBufferPointer<Event>) {
            for e in batch { mark(e) }
        }

        mutating func resolve(_ id: SubjectID) {
            let index = Int(id)
            if index >= slots.count { slots.append(contentsOf: repeatElement(-2, count: index + 1 - slots.count)) }
            let tokens = subjects.text(id).split(separator: ".", omittingEmptySubsequences: false)
            if tokens.count == 4, tokens[0] == "MD", tokens[3] == "TRADE" || tokens[3] == "QUOTE" {
                slots[index] = board.slot(tokens[2])
            } else {
                slots[index] = -1
            }
        }
    }

    init(board: MarkBoard, subjects: SubjectTable) {
        self.subjects = subjects
        slots = SlotCache(board: board, subjects: subjects)
        slots.slots.reserveCapacity(1024)
    }

    /// Marks the symbol of an `MD.<VENUE>.<SYMBOL>.TRADE` event at its price, or of a QUOTE at its mid when both
    /// sides are present (price and size above zero); ignores every other event.
    public func mark(_ event: Event) { slots.mark(event) }

    /// Marks from a batch of events (a run of ring slots), with one exclusivity check for the batch.
    public func mark(_ events: UnsafeBufferPointer<Event>) {
        slots.mark(batch: events)
    }
}
