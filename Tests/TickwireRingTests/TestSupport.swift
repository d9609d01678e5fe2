import Foundation
import TickwireCore

/// A thread the test starts and joins.
final class TestThread: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)
    init(_ body: @escaping @Sendable () -> Void) {
        let thread = Thread { [done] in body(); done.signal() }
        thread.stackSize = 1 << 20
        thread.start()
    }
    func join() { done.wait() }
}

/// A value shared between test threads, written under the project's lock.
final class Shared<T>: @unchecked Sendable {
    private let locked: Locked<T>
    init(_ value: T) { locked = Locked(value) }
    func with<R>(_ body: (inout T) -> R) -> R { locked.withLock(body) }
    var get: T { with { $0 } }
}

/// A QUOTE on `subject` whose payload repeats `n`, so a reader can tell a torn or misplaced copy.
func quote(_ subject: SubjectID, _ n: Int64) -> Event {
    Event(subjectID: subject, kind: .quote, eventTime: Nanos(n), knownTime: Nanos(n), a: n, b: n, c: n, d: n)
}

func isIntact(_ e: Event) -> Bool {
    e.a == e.b && e.b == e.c && e.c == e.d && e.eventTime.rawValue == e.a && e.knownTime.rawValue == e.a
}

/// Follows one consumer's stream: a GAP must start at `expected`; any other event must be `expected` and pass
/// `valid`. Advances `expected` past it and returns what was wrong, if anything.
func follow(_ e: Event, _ expected: inout UInt64, _ label: String, valid: (Event) -> Bool = { _ in true }) -> String? {
    if e.kind == .gap {
        defer { expected = e.gapBody.last + 1 }
        return e.gapBody.first == expected ? nil : "gap from \(e.gapBody.first), expected \(expected)"
    }
    defer { expected = e.seq + 1 }
    return e.seq == expected && valid(e) ? nil : "\(label) seq \(e.seq), expected \(expected)"
}

/// CPU time the calling thread has used, in nanoseconds (`CLOCK_THREAD_CPUTIME_ID`): what a wait burned.
func threadCPUNanos() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}
