import TickwireJournal
import TickwireZMQ

/// A trade service failure, naming what and where.
public enum TradeServiceError: Error, CustomStringConvertible {
    case keyFile(path: String, reason: String)
    /// The endpoint could not be bound (`addressInUse`: another process holds the port).
    case bind(endpoint: String, ZMQError)
    case zmq(ZMQError)
    case journal(JournalError)
    case noReply(clientOrderID: String, milliseconds: Int)
    case replication(String)

    public var description: String {
        switch self {
        case .keyFile(let path, let why): "key file \(path): \(why)"
        case .bind(let ep, let e) where e.addressInUse: "cannot bind the trade endpoint \(ep): the address is in use (is another tickwire running?)"
        case .bind(let ep, let e): "cannot bind the trade endpoint \(ep): \(e)"
        case .zmq(let e): "ZeroMQ: \(e)"
        case .journal(let e): "\(e)"
        case .noReply(let id, let ms): "no reply for '\(id)' within \(ms) ms (is the daemon running, and is this trader's key admitted?)"
        case .replication(let why): "replicated trading: \(why)"
        }
    }
}
