/// A growable array of trivial values for the engine's per-subject state, read and written in place through
/// its pointer.
///
/// Why not `Array`: every in-place write to an `Array` element checks that the buffer is uniquely referenced
/// (a runtime call) and bounds-checks, and the per-event path makes a dozen such writes. Indices here come from
/// the engine's own bindings, so they are in range by construction; growth happens only when a new subject is
/// bound. The owner calls `deallocate()` once.
struct FlatArray<Element: BitwiseCopyable> {
    private(set) var base: UnsafeMutablePointer<Element>
    private(set) var count = 0
    private var capacity: Int

    init(capacity: Int = 64) {
        precondition(capacity > 0)
        base = .allocate(capacity: capacity)
        self.capacity = capacity
    }

    func deallocate() { base.deallocate() }

    var indices: Range<Int> { 0..<count }

    @inline(__always)
    subscript(i: Int) -> Element {
        unsafeAddress { UnsafePointer(base + i) }
        nonmutating unsafeMutableAddress { base + i }
    }

    mutating func append(_ element: Element) {
        if count == capacity { grow(to: capacity * 2) }
        (base + count).initialize(to: element)
        count += 1
    }

    /// Appends `element` until there are `newCount` elements.
    mutating func extend(to newCount: Int, with element: Element) {
        if newCount > capacity { grow(to: max(newCount, capacity * 2)) }
        while count < newCount { (base + count).initialize(to: element); count += 1 }
    }

    private mutating func grow(to newCapacity: Int) {
        let bigger = UnsafeMutablePointer<Element>.allocate(capacity: newCapacity)
        bigger.moveInitialize(from: base, count: count)
        base.deallocate()
        base = bigger
        capacity = newCapacity
    }
}
