{#- The ledger equation: every item a stage received came out of it or was quarantined by it. -#}
{% test ledger_balances(model, items_in='items_in', items_out='items_out', quarantined='items_quarantined') %}
select *
from {{ model }}
where {{ items_in }} is null or {{ items_out }} is null or {{ quarantined }} is null
   or {{ items_in }} <> {{ items_out }} + {{ quarantined }}
{% endtest %}
