package app

import (
	"github.com/trackops/trackops/internal/inventory"
	"github.com/trackops/trackops/internal/kafka"
	"github.com/trackops/trackops/internal/order"
)

// buildInventory builds the Inventory service of the inventory role: its
// HTTP routes and the consumer that reserves, releases and commits stock as
// order events arrive.
func (a *App) buildInventory() error {
	if !a.roles.Has(RoleInventory) {
		return nil
	}
	svc := inventory.NewService(a.pool, inventory.WithCache(inventory.NewRedisCache(a.stores)), inventory.WithReads(a.reads),
		inventory.WithMetrics(a.metrics.inventory), inventory.WithRelayWake(a.relayWake()))
	a.routes = append(a.routes, inventory.NewHandlers(svc).Routes()...)
	consumer, err := kafka.NewConsumer(kafka.ConsumerConfig{
		Options: a.kafkaOptions("trackops-inventory"),
		Group:   inventory.ConsumerGroup,
		Topics:  inventory.ConsumedTopics,
		Events:  svc.Handler(inventory.ConsumerGroup),
		Logger:  a.log.With("component", "inventory"),
	})
	if err != nil {
		return err
	}
	a.addConsumer("inventory-consumer", consumer)
	return nil
}

// buildSaga starts the order saga of the orders role: inventory outcomes
// confirm or cancel PENDING orders through svc.
func (a *App) buildSaga(svc *order.Service) error {
	consumer, err := kafka.NewConsumer(kafka.ConsumerConfig{
		Options: a.kafkaOptions("trackops-order-saga"),
		Group:   order.SagaGroup,
		Topics:  order.SagaTopics,
		Events:  order.NewSaga(svc).Handler(order.SagaGroup),
		Logger:  a.log.With("component", "order-saga"),
	})
	if err != nil {
		return err
	}
	a.addConsumer("order-saga", consumer)
	return nil
}
