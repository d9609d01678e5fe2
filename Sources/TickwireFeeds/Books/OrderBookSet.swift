/// Order-by-order books for up to 65,536 instruments (indexed by ITCH stock locate, or any small id): the live
/// orders by reference and each instrument's aggregated levels. Feed-agnostic: the ITCH normalizer and the
/// LOBSTER source drive it with add, execute, cancel, delete and replace.
///
/// Operations on a reference it does not hold return nil and change nothing: a capture that starts mid-session
/// refers to orders added before it, and the caller counts those.
public final class OrderBookSet {
    public static let capacity = 1 << 16
    public let orders: OrderTable
    /// One book per locate, in memory owned here: a pointer, not an array, so updating a book checks neither
    /// the array's uniqueness nor exclusivity (one thread owns the set).
    /// - warning: valid for the set's lifetime; index it with 0..<65,536 only.
    public let books: UnsafeMutablePointer<Book>

    public init(expectedLiveOrders: Int = 1 << 16) {
        orders = OrderTable(expectedLive: expectedLiveOrders)
        books = .allocate(capacity: OrderBookSet.capacity)
        books.initialize(repeating: Book(), count: OrderBookSet.capacity)
    }

    deinit {
        books.deinitialize(count: OrderBookSet.capacity)
        books.deallocate()
    }

    /// Rests a new order. Returns false when the reference is already live (nothing changes).
    public func add(_ reference: UInt64, locate: UInt16, side: BookSide, price: UInt32, shares: UInt32) -> Bool {
        guard orders.insert(reference, RestingOrder(price: price, shares: shares, locate: locate, side: side)) else { return false }
        books[Int(locate)].add(side, price: price, shares: UInt64(shares))
        return true
    }

    /// Takes `shares` off an order (an execution or a partial cancel); the order goes when none remain.
    /// More shares than remain take what remains.
    /// - Returns: the order as it was before, or nil when the reference is unknown.
    public func reduce(_ reference: UInt64, by shares: UInt32) -> RestingOrder? {
        let slot = orders.find(reference)
        if slot < 0 { return nil }
        let order = orders[slot: slot]
        let taken = min(shares, order.shares)
        books[Int(order.locate)].remove(order.bookSide, price: order.price, shares: UInt64(taken))
        if taken == order.shares { orders.remove(slot: slot) } else { orders[slot: slot].shares = order.shares &- taken }
        return order
    }

    /// Removes an order whole. - Returns: the order, or nil when the reference is unknown.
    public func delete(_ reference: UInt64) -> RestingOrder? {
        let slot = orders.find(reference)
        if slot < 0 { return nil }
        let order = orders[slot: slot]
        books[Int(order.locate)].remove(order.bookSide, price: order.price, shares: UInt64(order.shares))
        orders.remove(slot: slot)
        return order
    }

    /// Cancels `original` and rests `new` on the same side and instrument with a new size and price.
    /// - Returns: the original order, or nil when it is unknown (then nothing is added: the side is unknown).
    public func replace(_ original: UInt64, with new: UInt64, shares: UInt32, price: UInt32) -> RestingOrder? {
        guard let old = delete(original) else { return nil }
        _ = add(new, locate: old.locate, side: old.bookSide, price: price, shares: shares)
        return old
    }

    /// The current top of `locate`'s book if it differs from the one last published, which it then becomes.
    @inline(__always)
    public func takeChangedTop(_ locate: UInt16) -> TopOfBook? {
        let top = books[Int(locate)].top
        if top == books[Int(locate)].published { return nil }
        books[Int(locate)].published = top
        return top
    }

    /// Forgets every order and level.
    public func reset() {
        orders.removeAll()
        for i in 0..<OrderBookSet.capacity where !books[i].bids.isEmpty || !books[i].asks.isEmpty || books[i].published != TopOfBook() {
            books[i] = Book()
        }
    }
}
