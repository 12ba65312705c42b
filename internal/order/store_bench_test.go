package order_test

import (
	"context"
	"testing"

	"github.com/trackops/trackops/internal/order"
	"github.com/trackops/trackops/internal/postgres/postgrestest"
)

// BenchmarkLoadOrder reads an order of three items from PostgreSQL, as a
// cache miss and every cache refresh after a change do: the order row and
// its items in one round trip.
//
//	go test ./internal/order -run '^$' -bench LoadOrder -benchtime 5000x
func BenchmarkLoadOrder(b *testing.B) {
	db := postgrestest.New(b)
	ctx := context.Background()
	svc := order.NewService(db.Pool)
	res, err := svc.Create(ctx, order.CreateRequest{Actor: "api:bench", Order: order.NewOrder{CustomerID: "cust-1",
		Items: []order.NewItem{{SKU: "SKU-1", Quantity: 1, UnitPrice: 100}, {SKU: "SKU-2", Quantity: 2, UnitPrice: 250},
			{SKU: "SKU-3", Quantity: 3, UnitPrice: 999}}}})
	if err != nil {
		b.Fatal(err)
	}
	id := res.Order.ID
	for b.Loop() {
		o, err := svc.Load(ctx, id)
		if err != nil || len(o.Items) != 3 {
			b.Fatalf("load: %v, %d items", err, len(o.Items))
		}
	}
}

// BenchmarkCreateAndConfirm is the order side of the saga's writes: an
// order of three items created with its ORDER_CREATED event, then confirmed
// with its status event, one transaction each.
func BenchmarkCreateAndConfirm(b *testing.B) {
	db := postgrestest.New(b)
	ctx := context.Background()
	svc := order.NewService(db.Pool)
	req := order.CreateRequest{Actor: "api:bench", Order: order.NewOrder{CustomerID: "cust-1",
		Items: []order.NewItem{{SKU: "SKU-1", Quantity: 1, UnitPrice: 100}, {SKU: "SKU-2", Quantity: 2, UnitPrice: 250},
			{SKU: "SKU-3", Quantity: 3, UnitPrice: 999}}}}
	confirm := func(o *order.Order) error {
		_, err := o.Transition(order.StatusConfirmed, "", "saga", svc.Now())
		return err
	}
	for b.Loop() {
		res, err := svc.Create(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := svc.Update(ctx, res.Order.ID, confirm); err != nil {
			b.Fatal(err)
		}
	}
}
