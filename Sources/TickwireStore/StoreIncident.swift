import TickwireCore

/// Events the store could not keep: how many, and the range of their ring sequences and event times.
public struct LostEvents: Sendable, Equatable, CustomStringConvertible {
    /// How many events.
    public private(set) var count: UInt64 = 0
    /// The lowest and highest ring sequence among them (`Event.seq`); the range may include stored events of
    /// other partitions.
    public private(set) var firstSeq: UInt64 = .max
    public private(set) var lastSeq: UInt64 = 0
    /// The earliest and latest event time among them.
    public private(set) var firstEventTime = Nanos(.max)
    public private(set) var lastEventTime = Nanos(.min)

    public init() {}

    mutating func add(seq: UInt64, eventTime: Int64) {
        count += 1
        firstSeq = min(firstSeq, seq); lastSeq = max(lastSeq, seq)
        firstEventTime = Nanos(min(firstEventTime.rawValue, eventTime)); lastEventTime = Nanos(max(lastEventTime.rawValue, eventTime))
    }

    public var description: String {
        count == 0 ? "no events" : "\(count) events, ring seq \(firstSeq)…\(lastSeq), event time \(firstEventTime.iso8601)…\(lastEventTime.iso8601)"
    }
}

/// Something the store writer did on its own that an operator must hear of; `StoreWriter` hands each one to its
/// `report` closure as it happens (the daemon logs them).
public enum StoreIncident: Sendable, Equatable, CustomStringConvertible {
    /// Writing works again after a failure (`StoreWriter.append` and `flush` threw its error); `lost` are the
    /// events that could not be stored meanwhile.
    case resumed(lost: LostEvents)
    /// The writer was closed while writing still failed; `lost` are the events not stored since the failure.
    case closedFailing(lost: LostEvents)
    /// A partial block at the end of a log (a crash during a write: nothing valid follows it) was cut off.
    case tornTailCut(path: String, offset: Int, bytes: Int, reason: String)
    /// A log with damage followed by intact blocks was copied whole to `copy` in the store's `quarantine/`;
    /// the intact blocks before and after the damage were kept.
    case quarantined(path: String, damage: [StoreDamage], copy: String)
    /// Sealing a partition failed (`StoreSealer`); its logs stay as they were and the next request tries again.
    case sealFailed(partition: String, reason: String)

    public var description: String {
        switch self {
        case .resumed(let lost): "store writing resumed; lost to the store while it failed: \(lost)"
        case .closedFailing(let lost): "store closed while writing failed; lost to the store: \(lost)"
        case .tornTailCut(let path, let offset, let bytes, let why):
            "store log '\(path)': cut a torn tail of \(bytes) bytes at byte \(offset) (\(why); nothing valid after it)"
        case .quarantined(let path, let damage, let copy):
            "store log '\(path)' is damaged: \(damage.map(\.summary).joined(separator: "; ")); copied whole to '\(copy)', its intact blocks kept"
        case .sealFailed(let partition, let why):
            "store: sealing \(partition) failed (its logs are kept; tried again at the next request): \(why)"
        }
    }
}

/// Damage found inside a store log: bytes that are no valid block, with intact blocks after them.
public struct StoreDamage: Sendable, Equatable, CustomStringConvertible {
    /// The log file.
    public var path: String
    /// Where the damage starts, and how many bytes were skipped to the next intact block.
    public var offset: Int
    public var bytes: Int
    /// What was wrong with the block at `offset`.
    public var reason: String
    /// Events in later intact blocks whose subject was defined only in the damaged bytes (unreadable; the
    /// quarantined copy keeps them).
    public var unattributedEvents: Int

    var summary: String {
        "\(bytes) bytes at byte \(offset) (\(reason))" + (unattributedEvents > 0 ? ", \(unattributedEvents) later events of subjects defined there unreadable" : "")
    }

    public var description: String { "store log '\(path)' is damaged: \(summary); the intact blocks after it were read" }
}
