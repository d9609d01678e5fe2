import TickwireCore

/// One price level: Price(4) and the shares resting there.
@frozen public struct PriceLevel: Equatable, Sendable {
    public var price: UInt32
    public var shares: UInt64
    public init(price: UInt32, shares: UInt64) { self.price = price; self.shares = shares }
}

/// The top of one book, in wire units (Price(4), shares); 0 price and 0 shares for an empty side.
@frozen public struct TopOfBook: Equatable, Sendable {
    public var bid: UInt32, bidShares: UInt64, ask: UInt32, askShares: UInt64
    public init(bid: UInt32 = 0, bidShares: UInt64 = 0, ask: UInt32 = 0, askShares: UInt64 = 0) {
        self.bid = bid; self.bidShares = bidShares; self.ask = ask; self.askShares = askShares
    }
    /// Both sides present and the best bid at or above the best ask.
    public var isCrossed: Bool { bidShares > 0 && askShares > 0 && bid >= ask }
    public var quote: Quote {
        Quote(bid: Price(units: Int64(bid), decimals: 4), bidSize: Quantity(units: Int64(bidShares), decimals: 0),
              ask: Price(units: Int64(ask), decimals: 4), askSize: Quantity(units: Int64(askShares), decimals: 0))
    }
}

/// Aggregated price levels of one instrument. Each side is a sorted array with the best price last, so the
/// top is O(1) and most changes (which happen near the top) touch the last few elements: adding a level
/// moves only the levels better than it.
public struct Book: Sendable {
    /// Ascending: the best (highest) bid last.
    public var bids: [PriceLevel] = []
    /// Descending: the best (lowest) ask last.
    public var asks: [PriceLevel] = []
    /// The top last published as a QUOTE.
    public var published = TopOfBook()
    public init() {}

    @inline(__always)
    public var top: TopOfBook {
        let b = bids.last, a = asks.last
        return TopOfBook(bid: b?.price ?? 0, bidShares: b?.shares ?? 0, ask: a?.price ?? 0, askShares: a?.shares ?? 0)
    }

    /// Adds shares at a price. - Complexity: O(levels better than `price`).
    @inline(__always)
    public mutating func add(_ side: BookSide, price: UInt32, shares: UInt64) {
        if side == .bid { Book.add(&bids, price: price, shares: shares, better: { $0 > $1 }) }
        else { Book.add(&asks, price: price, shares: shares, better: { $0 < $1 }) }
    }

    /// Removes shares at a price; the level goes when it empties. Returns false when no such level holds them
    /// (the order was never seen; the book is left unchanged).
    @discardableResult @inline(__always)
    public mutating func remove(_ side: BookSide, price: UInt32, shares: UInt64) -> Bool {
        side == .bid ? Book.remove(&bids, price: price, shares: shares) : Book.remove(&asks, price: price, shares: shares)
    }

    @inline(__always)
    static func add(_ levels: inout [PriceLevel], price: UInt32, shares: UInt64, better: (UInt32, UInt32) -> Bool) {
        var i = levels.count
        while i > 0 {
            let p = levels[i &- 1].price
            if p == price { levels[i &- 1].shares &+= shares; return }
            if !better(p, price) { break }
            i &-= 1
        }
        levels.insert(PriceLevel(price: price, shares: shares), at: i)
    }

    @inline(__always)
    static func remove(_ levels: inout [PriceLevel], price: UInt32, shares: UInt64) -> Bool {
        var i = levels.count
        while i > 0 {
            i &-= 1
            if levels[i].price == price {
                if levels[i].shares < shares { return false }
                levels[i].shares &-= shares
                if levels[i].shares == 0 {
                    if i == levels.count &- 1 { levels.removeLast() } else { levels.remove(at: i) }
                }
                return true
            }
        }
        return false
    }
}
