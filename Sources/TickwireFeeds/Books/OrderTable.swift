/// One resting order: where it rests (stock locate, side, price) and how many shares remain.
@frozen public struct RestingOrder: Equatable, Sendable {
    /// Price(4) as on the wire.
    public var price: UInt32
    public var shares: UInt32
    public var locate: UInt16
    /// `BookSide.rawValue`.
    public var side: UInt8
    public init(price: UInt32, shares: UInt32, locate: UInt16, side: BookSide) {
        self.price = price; self.shares = shares; self.locate = locate; self.side = side.rawValue
    }
    public var bookSide: BookSide { BookSide(rawValue: side)! }
}
public enum BookSide: UInt8, Sendable {
    case bid = 0
    case ask = 1
}

/// Live orders by order reference: an open-addressing hash table with linear probing and backward-shift
/// deletion (no tombstones, so a day of adds and deletes never degrades probing).
///
/// Why not `Dictionary`: a NASDAQ day adds ~10⁸ orders with ~10⁶ live at once; this table does one multiply
/// and usually one cache line per lookup, never allocates after it is sized, and keeps 24-byte slots inline.
/// The table doubles at 50% load (counted as `resizes`); size it for the expected live count to avoid that.
public final class OrderTable {
    struct Slot {
        /// The order reference plus one; 0 marks an empty slot.
        var key: UInt64
        var order: RestingOrder
    }

    // Exclusivity is not checked dynamically on these: the table is used from one thread, and the runtime
    // check (two calls and a thread-local lookup per access) cost more than the lookup itself.
    @exclusivity(unchecked) var slots: UnsafeMutablePointer<Slot>
    @exclusivity(unchecked) var mask: Int
    @exclusivity(unchecked) public private(set) var count: Int = 0
    public private(set) var resizes: Int = 0

    /// - Parameter expectedLive: orders expected to rest at once; the table holds twice that many slots.
    public init(expectedLive: Int = 1 << 16) {
        var capacity = 16
        while capacity < expectedLive * 2 { capacity <<= 1 }
        (slots, mask) = OrderTable.allocate(capacity)
    }

    deinit { slots.deallocate() }
    static func allocate(_ capacity: Int) -> (UnsafeMutablePointer<Slot>, Int) {
        let p = UnsafeMutablePointer<Slot>.allocate(capacity: capacity)
        p.initialize(repeating: Slot(key: 0, order: RestingOrder(price: 0, shares: 0, locate: 0, side: .bid)), count: capacity)
        return (p, capacity - 1)
    }

    /// The home slot: the key's low bits (folded with its high half). NASDAQ assigns order references in
    /// sequence across the day, so the live orders form a sliding window of references: consecutive adds land
    /// in consecutive slots (one cache line serves several) and a delete of a young order finds its line still
    /// warm. A multiplicative hash scattered them over the table, a likely cache miss per add.
    @inline(__always)
    func home(_ key: UInt64) -> Int { Int(truncatingIfNeeded: key ^ (key >> 32)) & mask }

    /// The slot index of `reference`, or -1.
    @inline(__always)
    public func find(_ reference: UInt64) -> Int {
        let key = reference &+ 1
        var i = home(key)
        while true {
            let k = slots[i].key
            if k == key { return i }
            if k == 0 { return -1 }
            i = (i &+ 1) & mask
        }
    }

    /// The order in slot `index` (from `find`); valid until the next insert or remove.
    @inline(__always)
    public subscript(slot index: Int) -> RestingOrder {
        get { slots[index].order }
        set { slots[index].order = newValue }
    }

    /// Adds an order. Returns false (and changes nothing) when the reference is already live, or is
    /// `UInt64.max`, which the table cannot key.
    public func insert(_ reference: UInt64, _ order: RestingOrder) -> Bool {
        let key = reference &+ 1
        if key == 0 { return false }
        if count &* 2 >= mask { grow() }
        var i = home(key)
        while true {
            let k = slots[i].key
            if k == key { return false }
            if k == 0 { break }
            i = (i &+ 1) & mask
        }
        slots[i] = Slot(key: key, order: order)
        count &+= 1
        return true
    }

    /// Removes the order in slot `index`, shifting later members of its probe run back.
    public func remove(slot index: Int) {
        var hole = index
        var j = index
        while true {
            j = (j &+ 1) & mask
            let k = slots[j].key
            if k == 0 { break }
            let h = home(k)
            // The entry at j may fill the hole unless its home lies cyclically in (hole, j].
            let stays = hole <= j ? (h > hole && h <= j) : (h > hole || h <= j)
            if !stays { slots[hole] = slots[j]; hole = j }
        }
        slots[hole].key = 0
        count &-= 1
    }
    func grow() {
        let old = slots, oldCapacity = mask + 1
        (slots, mask) = OrderTable.allocate(oldCapacity * 2)
        for i in 0..<oldCapacity where old[i].key != 0 {
            var j = home(old[i].key)
            while slots[j].key != 0 { j = (j + 1) & mask }
            slots[j] = old[i]
        }
        old.deallocate()
        resizes += 1
    }

    /// Forgets every order (keeps the capacity).
    public func removeAll() {
        for i in 0...mask { slots[i].key = 0 }
        count = 0
    }
}
