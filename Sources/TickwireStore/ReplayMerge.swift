import TickwireCore

/// One row of a replay window: its decoded columns and its subject's rank among the day's subjects (text order).
/// Eight words: one cache line, so a row read back in sorted order costs one miss.
struct MergedRow {
    var eventTime: Int64, knownTime: Int64
    /// kind | flags << 8 | source << 16, as `BlockBuffer.tag`.
    var tag: Int64
    var a: Int64, b: Int64, c: Int64, d: Int64
    var rank: Int64

    /// The stored event (subject id 0: the subject is the cursor's, `rank`).
    @inline(__always) var event: Event {
        Event(storedTag: tag, eventTime: eventTime, knownTime: knownTime, a: a, b: b, c: c, d: d)
    }
}

/// Puts the rows of one day's subjects into replay order — event time, then subject text, then each subject's own
/// order (known time, arrival) — a window at a time, by sorting instead of a heap of cursors.
///
/// Every cursor holds one decoded block. The window's horizon is the earliest last event time of those blocks:
/// every row before it is already decoded (a subject's later blocks start no earlier than its current one ends),
/// so the rows before the horizon (moved earlier while the window holds more than `windowRows`) are copied out
/// subject by subject in rank order and stably sorted by event time alone — equal times keep rank order, then each
/// subject's own order. A window of nothing (every subject's next row at or after the horizon) takes the rows at
/// the horizon, subject by subject, across block boundaries.
///
/// The sort is an LSD radix sort on (event time − the window's earliest), 11 bits a pass, over (key, row number)
/// pairs: a heap of 2,000 cursors spent most of a replay on mispredicted compares (BENCH-HISTORY D1). Memory:
/// 88 bytes a row of the largest window, which holds at most one block per subject.
final class ReplayMerge {
    private let cursors: [SubjectCursor]
    private var rows: UnsafeMutablePointer<MergedRow>
    private var keys: UnsafeMutablePointer<UInt64>, keys2: UnsafeMutablePointer<UInt64>
    private var order: UnsafeMutablePointer<UInt32>, order2: UnsafeMutablePointer<UInt32>
    private var capacity = 0
    private var count = 0
    private static let digitBits = 11
    /// Rows a window aims at: 4 MiB of rows (64 bytes each) and 1.5 MiB of sort keys stay in the cache.
    private static let windowRows = 1 << 16

    /// - Parameter cursors: the day's subjects in rank (text) order, each `rank` set to its position.
    init(_ cursors: [SubjectCursor]) {
        self.cursors = cursors
        rows = .allocate(capacity: 1); keys = .allocate(capacity: 1); keys2 = .allocate(capacity: 1)
        order = .allocate(capacity: 1); order2 = .allocate(capacity: 1)
        reserve(cursors.reduce(0) { $0 + $1.buffer.stride })
    }

    deinit { rows.deallocate(); keys.deallocate(); keys2.deallocate(); order.deallocate(); order2.deallocate() }

    private func reserve(_ n: Int) {
        guard n > capacity else { return }
        let c = max(n, capacity * 2)
        let r = UnsafeMutablePointer<MergedRow>.allocate(capacity: c)
        r.moveInitialize(from: rows, count: count)
        rows.deallocate(); keys.deallocate(); keys2.deallocate(); order.deallocate(); order2.deallocate()
        rows = r
        keys = .allocate(capacity: c); keys2 = .allocate(capacity: c)
        order = .allocate(capacity: c); order2 = .allocate(capacity: c)
        capacity = c
    }

    /// A cursor's place, copied out of it for the window's scans.
    private struct Lane {
        private(set) var position: Int
        var end = 0
        let count: Int
        let times: UnsafePointer<Int64>
        /// The event times of the current row (while there is one) and of the block's last row.
        private(set) var head: Int64 = .max
        private(set) var last: Int64 = .max
        init(_ c: SubjectCursor) {
            position = c.position; count = c.buffer.count; times = c.buffer.eventTime
            if position < count { head = times[position]; last = times[count &- 1] }
        }
        mutating func move(to p: Int) { position = p; if p < count { head = times[p] } }
    }

    /// Copies rows `from..<to` of a cursor's block to the window.
    private func stage(_ c: SubjectCursor, _ from: Int, _ to: Int) {
        let n = to - from
        guard n > 0 else { return }
        reserve(count + n)
        let b = c.buffer, rank = Int64(c.rank)
        let et = b.eventTime, kt = b.knownTime, tag = b.tag, a = b.a, bb = b.b, cc = b.c, d = b.d
        let out = rows + count
        for i in 0..<n {
            let s = from &+ i
            out[i] = MergedRow(eventTime: et[s], knownTime: kt[s], tag: tag[s], a: a[s], b: bb[s], c: cc[s], d: d[s], rank: rank)
        }
        count += n
    }

    /// Calls `body` with each window's rows and the order to read them in (indices into the rows), until every
    /// cursor is exhausted.
    /// - warning: the pointers are valid only during the call.
    func run(_ body: (UnsafePointer<MergedRow>, UnsafeBufferPointer<UInt32>) throws -> Void) rethrows {
        var active = cursors.filter { $0.fill() }
        // Each active cursor's position, block length and event times, read without a class access per row.
        var lanes = active.map { Lane($0) }
        var span: UInt64 = .max          // the time a window of `windowRows` took last time: the next one's guess
        while !active.isEmpty {
            var horizon = Int64.max, lowest = Int64.max
            for l in lanes {
                horizon = min(horizon, l.last)
                lowest = min(lowest, l.head)
            }
            if span < UInt64(bitPattern: horizon &- lowest) { horizon = lowest &+ Int64(bitPattern: span) }
            // Narrowed (keeping the lowest time in) while the window is well over the cache's share: the rows
            // are read back in sorted order, at random. Rows before the horizon are few per subject: a scan.
            var n = 0
            while true {
                n = 0
                lanes.withUnsafeMutableBufferPointer { ls in
                    for k in ls.indices {
                        guard ls[k].head < horizon else { ls[k].end = ls[k].position; continue }
                        let t = ls[k].times, end = ls[k].count
                        var e = ls[k].position
                        while e < end && t[e] < horizon { e &+= 1 }
                        ls[k].end = e
                        n &+= e &- ls[k].position
                    }
                }
                let used = UInt64(bitPattern: horizon &- lowest)    // exact however far apart the times are
                if n <= 2 * Self.windowRows || used <= 1 { break }
                horizon = lowest &+ Int64(bitPattern: used / 2)
            }
            if n > 0 { span = max(1, UInt64(min(Double(UInt64(bitPattern: horizon &- lowest)) * Double(Self.windowRows) / Double(n), 0x1p62))) }
            count = 0
            for k in active.indices where lanes[k].end > lanes[k].position {
                stage(active[k], lanes[k].position, lanes[k].end)
                lanes[k].move(to: lanes[k].end)
                active[k].position = lanes[k].end
            }
            if count > 0 {
                sortByEventTime()
            } else {
                // Rows at the horizon, in rank order: already replay order.
                for k in lanes.indices where lanes[k].position < lanes[k].count && lanes[k].head == horizon {
                    let c = active[k]
                    while true {
                        let t = c.buffer.eventTime
                        var end = c.position
                        while end < c.buffer.count && t[end] == horizon { end &+= 1 }
                        stage(c, c.position, end)
                        c.position = end
                        if end < c.buffer.count || !c.fill() || c.eventTime != horizon { break }
                    }
                    lanes[k] = Lane(c)
                }
                for i in 0..<count { order[i] = UInt32(truncatingIfNeeded: i) }
            }
            try body(rows, UnsafeBufferPointer(start: order, count: count))
            // Blocks used up: the next one, or the subject leaves the merge.
            if lanes.contains(where: { $0.position == $0.count }) {
                var kept = 0
                for k in active.indices {
                    if lanes[k].position == lanes[k].count {
                        guard active[k].fill() else { continue }
                        lanes[k] = Lane(active[k])
                    }
                    active[kept] = active[k]; lanes[kept] = lanes[k]
                    kept += 1
                }
                active.removeLast(active.count - kept); lanes.removeLast(lanes.count - kept)
            }
        }
    }

    /// Fills `order` with the window's rows stably sorted by event time.
    private func sortByEventTime() {
        let n = count
        var lowest = Int64.max
        for i in 0..<n { lowest = min(lowest, rows[i].eventTime) }
        var highest: UInt64 = 0
        for i in 0..<n {
            let k = UInt64(bitPattern: rows[i].eventTime &- lowest)
            keys[i] = k; order[i] = UInt32(truncatingIfNeeded: i)
            highest = max(highest, k)
        }
        let bits = UInt64.bitWidth - highest.leadingZeroBitCount
        let radix = 1 << Self.digitBits, mask = UInt64(radix - 1)
        var counts = [Int](repeating: 0, count: radix)
        var shift = 0
        var k = keys, k2 = keys2, o = order, o2 = order2
        while shift < bits {
            counts.withUnsafeMutableBufferPointer { h in
                for j in 0..<radix { h[j] = 0 }
                for i in 0..<n { h[Int((k[i] >> UInt64(shift)) & mask)] &+= 1 }
                var sum = 0
                for j in 0..<radix { let c = h[j]; h[j] = sum; sum &+= c }
                for i in 0..<n {
                    let key = k[i], digit = Int((key >> UInt64(shift)) & mask)
                    let at = h[digit]
                    h[digit] = at &+ 1
                    k2[at] = key; o2[at] = o[i]
                }
            }
            swap(&k, &k2); swap(&o, &o2)
            shift += Self.digitBits
        }
        if o != order { order.update(from: o, count: n) }
    }
}
