package outbox

// LockKey is the advisory lock the relay holding the cursor owns, for tests
// that find and kill it.
const LockKey = lockKey

// ConnectWithSlowCommits opens a session whose commits hold the NOTIFY
// lock for delay before their flush, as on a slow disk.
var ConnectWithSlowCommits = connectWithSlowCommits
