package events

import "time"

// Order statuses as the ORDER_* events carry them (status, old_status,
// new_status, previous_status). The order domain's statuses are these
// values, so a consumer such as inventory reads them without importing the
// order service.
const (
	StatusPending    = "PENDING"
	StatusConfirmed  = "CONFIRMED"
	StatusProcessing = "PROCESSING"
	StatusShipped    = "SHIPPED"
	StatusDelivered  = "DELIVERED"
	StatusCancelled  = "CANCELLED"
)

// ReasonOutOfStock is the reason of INVENTORY_RESERVATION_FAILED, and the
// reason the order saga cancels such an order with.
const ReasonOutOfStock = "OUT_OF_STOCK"

// OrderItem is one line of an order as events carry it.
type OrderItem struct {
	SKU       string `json:"sku"`
	Quantity  int    `json:"quantity"`
	UnitPrice string `json:"unit_price"`
}

// OrderCreatedData is the data of ORDER_CREATED.
type OrderCreatedData struct {
	OrderID     string      `json:"order_id"`
	CustomerID  string      `json:"customer_id"`
	Status      string      `json:"status"`
	Items       []OrderItem `json:"items"`
	TotalAmount string      `json:"total_amount"`
	Currency    string      `json:"currency"`
	Version     int         `json:"version"`
	CreatedAt   time.Time   `json:"created_at"`
}

// OrderStatusUpdatedData is the data of ORDER_STATUS_UPDATED.
type OrderStatusUpdatedData struct {
	OrderID   string    `json:"order_id"`
	OldStatus string    `json:"old_status"`
	NewStatus string    `json:"new_status"`
	Reason    string    `json:"reason,omitempty"`
	Actor     string    `json:"actor,omitempty"`
	Version   int       `json:"version"`
	UpdatedAt time.Time `json:"updated_at"`
}

// OrderCancelledData is the data of ORDER_CANCELLED.
type OrderCancelledData struct {
	OrderID        string    `json:"order_id"`
	PreviousStatus string    `json:"previous_status"`
	Reason         string    `json:"reason,omitempty"`
	Actor          string    `json:"actor,omitempty"`
	Version        int       `json:"version"`
	CancelledAt    time.Time `json:"cancelled_at"`
}

// ReservedLine is one SKU's quantity in an inventory event.
type ReservedLine struct {
	SKU      string `json:"sku"`
	Quantity int    `json:"quantity"`
}

// ShortLine is a SKU that could not be reserved and why.
type ShortLine struct {
	SKU       string `json:"sku"`
	Requested int    `json:"requested"`
	Available int    `json:"available"`
	Reason    string `json:"reason"` // INSUFFICIENT_STOCK or UNKNOWN_SKU
}

// InventoryReservedData is the data of INVENTORY_RESERVED.
type InventoryReservedData struct {
	OrderID string         `json:"order_id"`
	Lines   []ReservedLine `json:"lines"`
}

// InventoryReservationFailedData is the data of INVENTORY_RESERVATION_FAILED.
type InventoryReservationFailedData struct {
	OrderID string      `json:"order_id"`
	Reason  string      `json:"reason"` // ReasonOutOfStock
	Short   []ShortLine `json:"short"`
}

// InventoryReleasedData is the data of INVENTORY_RELEASED.
type InventoryReleasedData struct {
	OrderID string         `json:"order_id"`
	Lines   []ReservedLine `json:"lines"`
	Reason  string         `json:"reason,omitempty"`
}
